"""Validation of config values beyond their types: ranges, registry names, combinations.

Every problem raises a `ConfigError` naming the dotted key, what was
expected and what was received, and how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keras_mtmm import registry as registries
from keras_mtmm.config.checks_data import validate_data
from keras_mtmm.config.checks_sharing import validate_sharing
from keras_mtmm.config.choices import LR_SCHEDULES, OPTIMIZERS
from keras_mtmm.config.data import DataConfig
from keras_mtmm.config.names import check_member_name, check_model_name  # noqa: F401 (re-exported)
from keras_mtmm.config.schema import PRESENCE_KEY
from keras_mtmm.errors import ConfigError, choice_hint, did_you_mean


@dataclass(frozen=True)
class EncoderContext:
    """What an encoder's `check_config` reads beside its own keys: its modality, and whether to check files."""

    modality: object
    check_files: bool


def validate_config(config, check_files: bool = True) -> None:
    """Check values and registry names; raise `ConfigError` on the first problem.

    `check_files=False` skips what lives outside the config (TF Hub handles),
    for a config read back from an export that carries its own copy.
    """
    check_model_name(config.name, "name")
    for kind, names in (("modalities", config.modalities), ("tasks", config.tasks)):
        for name in names:
            check_member_name(name, f"{kind}.{name}")
    shared = {name: task for name, task in config.tasks.items() if task.data is None}
    validate_data(config.data, "data", registries, shared)
    _validate_mixing(config)

    if not config.modalities:
        raise ConfigError("modalities", "no modality is configured", "add at least one (see configs/demo.yaml)")
    for name, modality in config.modalities.items():
        _validate_modality(name, modality, config, check_files)

    _validate_fusion(config)

    validate_sharing(config)

    if not config.tasks:
        raise ConfigError("tasks", "no task is configured", "add at least one (see configs/demo.yaml)")
    for name, task in config.tasks.items():
        _validate_task(name, task, config, registries)
        if task.data is not None:
            validate_data(task.data, f"tasks.{name}.data", registries, {name: task})

    _validate_weighting(config, registries)

    training = config.training
    for key in ("epochs", "batch_size", "shuffle_buffer"):
        _check_positive(f"training.{key}", getattr(training, key))
    for key, kind in (("cache", "true/false"), ("jit_compile", "true/false"), ("steps_per_execution", "an integer")):
        value = getattr(training, key)
        if isinstance(value, str) and value != "auto":
            raise ConfigError(f"training.{key}", f"expected auto or {kind}, got {value!r}", "set it to auto")
    if training.steps_per_execution != "auto":
        _check_positive("training.steps_per_execution", training.steps_per_execution)
    if training.learning_rate <= 0:
        raise ConfigError("training.learning_rate", f"expected > 0, got {training.learning_rate}", "e.g. 0.001")
    if training.steps_per_epoch is not None:
        _check_positive("training.steps_per_epoch", training.steps_per_epoch)
    _validate_optimizer(training)
    if training.distribute not in DISTRIBUTE_CHOICES:
        raise ConfigError(
            "training.distribute",
            f"unknown value {training.distribute!r}",
            choice_hint(str(training.distribute), DISTRIBUTE_CHOICES),
        )
    if not isinstance(training.checkpoint_every, int) or training.checkpoint_every < 0:
        raise ConfigError(
            "training.checkpoint_every",
            f"expected a whole number of steps >= 0, got {training.checkpoint_every!r}",
            "e.g. 200 (0: checkpoint at the end of every epoch)",
        )
    if training.early_stopping_patience < 0:
        raise ConfigError(
            "training.early_stopping_patience",
            f"expected a whole number of epochs >= 0, got {training.early_stopping_patience}",
            "e.g. 4 (epochs without improvement before stopping)",
        )
    if not 0 <= config.seed <= MAX_SEED:
        raise ConfigError("seed", f"expected a whole number from 0 to {MAX_SEED}, got {config.seed}", "e.g. seed: 42")
    if config.export.version is not None:
        _check_positive("export.version", config.export.version)
        if config.export.version > 2**63 - 1:
            raise ConfigError("export.version", "TF Serving versions are int64", "pick a smaller number")


MAX_SEED = 2**32 - 1  # NumPy's and TensorFlow's seeds


DISTRIBUTE_CHOICES = ("none", "mirrored", "multi_worker")


def _validate_mixing(config) -> None:
    data = config.data
    if data.mixing not in ("joint", "interleaved"):
        raise ConfigError("data.mixing", f"expected joint or interleaved, got {data.mixing!r}", "e.g. joint")
    registries.SAMPLERS.get(data.sampler, "data.sampler")
    if data.temperature <= 0:
        raise ConfigError("data.temperature", f"expected > 0, got {data.temperature}", "e.g. 2.0")
    defaults = DataConfig()
    owners: dict[str, str] = {}
    for name, task in config.tasks.items():
        stream = "data" if task.data is None else f"tasks.{name}.data"
        if task.data is not None:
            for key in ("mixing", "sampler", "temperature"):
                if getattr(task.data, key) != getattr(defaults, key):
                    raise ConfigError(f"{stream}.{key}", "applies to the top-level data only", f"set data.{key}")
        other = owners.setdefault(task.label, stream)
        if other != stream:
            raise ConfigError(
                f"tasks.{name}.label",
                f"label column '{task.label}' is read from two datasets ({other} and {stream})",
                "give each dataset's label column its own name",
            )


def _validate_fusion(config) -> None:
    """The shared `fusion` keys; the strategy checks its own (`keras_mtmm.layers.fusion`)."""
    fusion = config.fusion
    fusion.check_choice("fusion", config)
    for name, rate in fusion.modality_dropout.items():
        if name not in config.modalities:
            raise ConfigError(
                f"fusion.modality_dropout.{name}",
                "not a configured modality",
                did_you_mean(name, list(config.modalities)) or f"modalities: {', '.join(config.modalities)}",
            )
        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"fusion.modality_dropout.{name}", f"expected a rate in [0, 1), got {rate}", "e.g. 0.2")


def _validate_modality(name: str, modality, config, check_files: bool = True) -> None:
    """The shared keys of a modality and its encoder; the modality type and the encoder check their own."""
    where = f"modalities.{name}"
    if not name.isidentifier():
        raise ConfigError(where, f"modality name {name!r} is not an identifier", "use letters, digits and _")
    if name == PRESENCE_KEY:
        raise ConfigError(where, f"'{PRESENCE_KEY}' is the name of the model's presence input", "rename the modality")
    kind = registries.MODALITY_TYPES.get(modality.type, f"{where}.type")
    if not modality.columns:
        raise ConfigError(f"{where}.columns", "no source column is named", "list the column(s) this modality reads")
    if kind.single_column and len(modality.columns) != 1:
        raise ConfigError(
            f"{where}.columns",
            f"an {modality.type} modality reads exactly one column, got {len(modality.columns)}",
            "make one modality per column",
        )
    modality.check_choice(where, config)
    encoder = registries.ENCODERS.get(modality.encoder.type, f"{where}.encoder.type")
    if modality.type not in encoder.modality_types:
        allowed = [n for n in registries.ENCODERS.names() if modality.type in registries.ENCODERS.get(n).modality_types]
        raise ConfigError(
            f"{where}.encoder.type",
            f"encoder '{modality.encoder.type}' does not take {modality.type} input",
            f"choose one of: {', '.join(allowed)}",
        )
    _check_positive(f"{where}.encoder.units", modality.encoder.units)
    _check_rate(f"{where}.encoder.dropout", modality.encoder.dropout)
    modality.encoder.check_choice(f"{where}.encoder", EncoderContext(modality, check_files))


def _validate_optimizer(training) -> None:
    if training.optimizer not in OPTIMIZERS:
        raise ConfigError(
            "training.optimizer",
            f"unknown optimizer {training.optimizer!r}",
            choice_hint(training.optimizer, OPTIMIZERS),
        )
    if training.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(
            "training.lr_schedule",
            f"unknown schedule {training.lr_schedule!r}",
            choice_hint(training.lr_schedule, LR_SCHEDULES),
        )
    if not 0.0 <= training.momentum < 1.0:
        raise ConfigError("training.momentum", f"expected in [0, 1), got {training.momentum}", "e.g. 0.9")
    if training.momentum != 0.9 and training.optimizer != "sgd":
        raise ConfigError(
            "training.momentum", f"applies to optimizer sgd only, not '{training.optimizer}'", "remove it"
        )
    if not training.weight_decay >= 0.0:
        raise ConfigError("training.weight_decay", f"expected >= 0, got {training.weight_decay}", "e.g. 0.0001")
    if training.clipnorm is not None and not training.clipnorm > 0.0:
        raise ConfigError("training.clipnorm", f"expected > 0 or null, got {training.clipnorm}", "e.g. 1.0")
    if not isinstance(training.warmup_steps, int) or training.warmup_steps < 0:
        raise ConfigError("training.warmup_steps", f"expected an int >= 0, got {training.warmup_steps}", "e.g. 100")
    if training.warmup_steps and training.lr_schedule != "cosine":
        raise ConfigError(
            "training.warmup_steps", "warm-up is part of the cosine schedule", "set training.lr_schedule: cosine"
        )


def _validate_weighting(config, registries: Any) -> None:
    weighting = config.weighting
    strategy = registries.WEIGHTINGS.get(weighting.strategy, "weighting.strategy")
    limit = getattr(strategy, "max_tasks", None)
    if limit is not None and len(config.tasks) > limit:
        raise ConfigError(
            "weighting.strategy",
            f"'{weighting.strategy}' solves its subproblem exactly over the 2^T supports of the simplex, "
            f"for at most {limit} tasks; {len(config.tasks)} are configured",
            "use pcgrad, nash_mtl or another strategy, or fewer tasks",
        )
    if weighting.strategy in registries.WEIGHTINGS.names_with("uses_gradients") and len(config.tasks) < 2:
        raise ConfigError(
            "weighting.strategy",
            f"'{weighting.strategy}' combines the gradients of several tasks, but only one task is configured",
            "add a task or use weighting.strategy: static",
        )
    per_task = getattr(config.fusion.get(), "per_task", False)
    if weighting.strategy == "mgda" and (config.fusion.strategy == "late" or per_task):
        what = "late fusion" if config.fusion.strategy == "late" else "per-task attention fusion"
        raise ConfigError(
            "weighting.strategy",
            f"mgda works on the one shared representation, and {what} has none",
            "use another fusion.strategy or weighting.strategy",
        )
    weighting.check_choice("weighting", config)


def _validate_task(name: str, task, config, registries: Any) -> None:
    where = f"tasks.{name}"
    if not name.isidentifier():
        raise ConfigError(where, f"task name {name!r} is not an identifier", "use letters, digits and _")
    if name in config.modalities:
        raise ConfigError(where, f"task name '{name}' is also a modality name", "rename one of them")
    head = registries.TASK_TYPES.get(task.type, f"{where}.type")
    if not task.label and head.needs_label:
        raise ConfigError(f"{where}.label", "no label column is named", "set the column holding this task's labels")
    if task.weight < 0:
        raise ConfigError(f"{where}.weight", f"expected a weight >= 0, got {task.weight}", "use 0 to switch a task off")
    if task.metrics is not None:
        for i, metric in enumerate(task.metrics):
            if metric not in head.metric_names:
                raise ConfigError(
                    f"{where}.metrics[{i}]",
                    f"unknown metric '{metric}' for a {task.type} task",
                    choice_hint(metric, head.metric_names),
                )
    if task.classes is not None:
        if len(set(task.classes)) != len(task.classes):
            raise ConfigError(f"{where}.classes", "class names repeat", "list each class once")
        if task.type == "binary" and len(task.classes) != 2:
            raise ConfigError(
                f"{where}.classes", f"a binary task has 2 classes, got {len(task.classes)}", "list [negative, positive]"
            )
        if task.type == "regression":
            raise ConfigError(f"{where}.classes", "a regression task has no classes", "remove classes")
    _check_positive(f"{where}.top_k", task.top_k)
    _check_positive(f"{where}.ndcg_k", task.ndcg_k)
    if task.group is not None and task.type != "binary":
        raise ConfigError(
            f"{where}.group", f"ranking within groups scores binary tasks, not {task.type}", "remove group"
        )
    _validate_dependency(name, task, config)
    _validate_token_task(name, task, config, head, registries)


def _validate_token_task(name: str, task, config, head, registries: Any) -> None:
    """A token task names a text modality whose encoder keeps one feature per token, one token per word."""
    where = f"tasks.{name}.modality"
    if not head.per_token:
        if task.modality is not None:
            raise ConfigError(where, f"a {task.type} task reads every modality, not one", "remove modality")
        return
    if not 0.0 < task.mask_rate < 1.0:
        raise ConfigError(f"tasks.{name}.mask_rate", f"expected a rate in (0, 1), got {task.mask_rate}", "e.g. 0.15")
    texts = [m for m, modality in config.modalities.items() if modality.type == "text"]
    if task.modality not in texts:
        given = "no modality is named" if task.modality is None else f"{task.modality!r} is not a text modality"
        hint = did_you_mean(task.modality or "", texts) or f"text modalities: {', '.join(texts) or 'none'}"
        raise ConfigError(where, f"a {task.type} task tags the tokens of a text modality; {given}", hint)
    modality = config.modalities[task.modality]
    if not head.needs_label and task.label != modality.columns[0]:
        raise ConfigError(
            f"tasks.{name}.label",
            f"a {task.type} task predicts its text's own words, column '{modality.columns[0]}'",
            "remove label",
        )
    if not getattr(registries.ENCODERS.get(modality.encoder.type), "reads_token_ids", False):
        raise ConfigError(
            f"modalities.{task.modality}.encoder.type",
            f"the {modality.encoder.type} encoder gives no feature per token, which tasks.{name} reads",
            "use transformer, conv1d or bag",
        )
    if "strip_punctuation" in modality.get().standardize:
        raise ConfigError(
            f"modalities.{task.modality}.standardize",
            f"stripping punctuation can drop a whole word, and tasks.{name} has a tag per word",
            "use standardize: lower (or auto)",
        )
    if registries.FUSIONS.get(config.fusion.strategy).is_decision_level:
        raise ConfigError(
            "fusion.strategy",
            f"{config.fusion.strategy} fusion makes one prediction per modality, and tasks.{name} reads the tokens",
            "use a feature-level fusion strategy",
        )


COMBINE_CHOICES = ("product",)


def _validate_dependency(name: str, task, config) -> None:
    """`depends_on`: another binary task, no cycle, and no output name taken twice."""
    where = f"tasks.{name}"
    if task.combine not in COMBINE_CHOICES:
        raise ConfigError(
            f"{where}.combine", f"unknown value {task.combine!r}", choice_hint(task.combine, COMBINE_CHOICES)
        )
    if task.depends_on is None:
        return
    others = [other for other in config.tasks if other != name]
    if task.depends_on not in others:
        hint = did_you_mean(task.depends_on, others) or f"tasks: {', '.join(others) or 'none other'}"
        raise ConfigError(f"{where}.depends_on", f"{task.depends_on!r} is not another configured task", hint)
    parent = config.tasks[task.depends_on]
    if task.type != "binary" or parent.type != "binary":
        raise ConfigError(
            f"{where}.depends_on",
            f"p(t) = p(other) x p(t | other) multiplies two probabilities; '{name}' is {task.type} "
            f"and '{task.depends_on}' is {parent.type}",
            "make both tasks binary, or remove depends_on",
        )
    seen, current = {name}, task.depends_on
    while current is not None:
        if current in seen:
            raise ConfigError(f"{where}.depends_on", f"the dependencies from '{name}' go round in a circle", "break it")
        seen.add(current)
        current = config.tasks[current].depends_on
    output = f"{name}_conditional"
    if output in config.tasks or output in config.modalities:
        raise ConfigError(
            where, f"'{output}' (this task's conditional output) is also a task or modality name", "rename one"
        )


def _check_positive(where: str, value: int) -> None:
    if value < 1:
        raise ConfigError(where, f"expected a positive integer, got {value}", "set it to 1 or more")


def _check_rate(where: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(where, f"expected a rate in [0, 1), got {value}", "e.g. 0.1")
