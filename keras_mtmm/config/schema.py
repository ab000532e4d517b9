"""The experiment config's schema: one typed dataclass per config block.

One YAML file describes an experiment (see `configs/demo.yaml`). Loading it
(`keras_mtmm.config.loading`) gives an `ExperimentConfig` whose every field has
been type-checked; unknown keys, wrong types and unknown registry names raise a
`ConfigError` that names the dotted key, what was expected and what was received.

Example:
    >>> config = load_config("configs/demo.yaml", overrides=["training.epochs=1"])
    >>> config.tasks["price"].weight
    0.05
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import yaml

from keras_mtmm.config.data import DataConfig
from keras_mtmm.config.one_of import OneOfConfig
from keras_mtmm.config.tune import TuneConfig
from keras_mtmm.config.types import to_plain
from keras_mtmm.registry import ENCODERS, FUSIONS, MODALITY_TYPES, SHARINGS, WEIGHTINGS

# The model input that says which modalities each example has (float32 [B, M], 1 = present);
# no modality may take this name.
PRESENCE_KEY = "modality_presence"


def sub_configs() -> Any:
    """The `sub_configs` field of a one-of block (see `keras_mtmm.config.one_of`)."""
    return field(default_factory=dict, repr=False)


def origins() -> Any:
    return field(default_factory=dict, repr=False, compare=False)


@dataclass
class EncoderConfig(OneOfConfig):
    """How one modality is encoded into a feature vector of width `units`.

    `type` names a registered encoder (image: `cnn`; text: `conv1d`, `bag`;
    numeric: `mlp`; categorical: `embedding`; image or text: `hub`); left out,
    the modality type's default. Each encoder's own keys (e.g. `cnn`: `filters`,
    `kernel_size`, `pooling`, `grid`; `hub`: `handle`, `trainable`, `signature`,
    `output_key`) are declared beside it (`config_class`) and go under
    `encoder.<type>:` or flat in the block.
    """

    registry: ClassVar = ENCODERS
    kind: ClassVar = "encoder type"

    type: str | None = None
    units: int = 64
    dropout: float = 0.0
    sub_configs: dict = sub_configs()
    origins: dict = origins()


@dataclass
class ModalityConfig(OneOfConfig):
    """One raw input of the model: its type, source columns and encoder.

    image and text modalities read one column; numeric and categorical read
    one or more, in the order given (that order is the serving input's). The
    modality type's own keys (image: `image_size`; text: `max_tokens`,
    `sequence_length`; categorical: `max_tokens`) are declared by its class in
    `keras_mtmm.preprocessing.modalities` and go under `<type>:` or flat.
    """

    registry: ClassVar = MODALITY_TYPES
    kind: ClassVar = "modality type"

    type: str = ""
    columns: list[str] = field(default_factory=list)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    sub_configs: dict = sub_configs()
    origins: dict = origins()

    def spec(self) -> dict:
        """The Preprocessor's dict for this modality: type, columns and the type's own keys."""
        return {"type": self.type, "columns": list(self.columns), **dataclasses.asdict(self.get())}

    def input_shape(self) -> tuple:
        """The model input's shape (no batch), as the modality type declares it."""
        return MODALITY_TYPES.get(self.type)().model_input(self.spec())[0]

    @classmethod
    def from_raw(cls, raw: dict, where: str, build):
        """As every one-of block, after giving the encoder the modality type's default type."""
        kind = raw.get("type", "")
        if isinstance(kind, str):
            MODALITY_TYPES.get(kind, f"{where}.type")  # (before the encoder, whose default type it gives)
        encoder = raw.get("encoder")
        if isinstance(kind, str) and kind in MODALITY_TYPES and (encoder is None or isinstance(encoder, dict)):
            if (encoder or {}).get("type") is None:
                raw = {**raw, "encoder": {**(encoder or {}), "type": MODALITY_TYPES.get(kind).default_encoder}}
        return super().from_raw(raw, where, build)


@dataclass
class FusionConfig(OneOfConfig):
    """How modality features are fused, and how the model learns to do without a modality.

    `strategy`: `early`, `intermediate`, `weighted`, `late`, `gated`,
    `attention`, `low_rank` or `cross_attention` (see `keras_mtmm.layers.fusion`);
    each declares its own keys: `units` (the common projection width; every
    strategy but `early`/`late`), `weights` (`weighted`, `late`: fixed modality
    weights in modality order, otherwise learned), `rank` (`low_rank`),
    `depth` (`intermediate`), `per_task` (`attention`: one attention per task),
    `num_heads` (`cross_attention`).

    `modality_dropout`: per modality, the rate at which training marks it
    missing (ModDrop), so the model learns to serve without it.
    """

    registry: ClassVar = FUSIONS
    selector: ClassVar = "strategy"
    kind: ClassVar = "fusion.strategy"

    strategy: str = "early"
    modality_dropout: dict[str, float] = field(default_factory=dict)
    sub_configs: dict = sub_configs()
    origins: dict = origins()


@dataclass
class SharingConfig(OneOfConfig):
    """How parameters are shared between tasks.

    - `hard`: a shared trunk (`shared_units`) and one tower per task.
    - `mmoe`: `num_experts` experts (MLPs of `expert_units`) shared by all
      tasks, one softmax gate per task.
    - `ple`: `num_levels` CGC levels, each with `num_shared_experts` shared
      and `num_task_experts` task-specific experts (`expert_units`); CGC is
      `num_levels: 1`.
    - `cross_stitch`: one column per task with layers of `shared_units`,
      mixed by a learned T×T matrix after each layer.
    - `dselect_k`: MMoE's experts, each task's gate a differentiable choice of
      at most `dselect_k` of them (smooth-step width `dselect_gamma`, entropy
      weight `dselect_entropy_weight`; static per-task gates unless
      `dselect_per_example`).
    - `mtan`: the cnn image encoder's conv blocks shared, read by each task
      through its own attention masks; fused per task; one tower per task.
    Each type's own keys are declared beside it (`config_class`, in
    `keras_mtmm.layers.sharing`) and go under `sharing.<type>:` or flat.
    Every type ends in one tower (`tower_units`) per task. `activation` is the
    hidden layers' (experts, trunk, columns, towers): `gelu` (default), `relu`
    or `silu`. GELU units cannot die as ReLU units can (a tower of 8 ReLU units
    stuck with most of them at 0 is one way a task starts slowly); measured in
    benchmarks/mmoe_csv_end_to_end.py (README).
    """

    registry: ClassVar = SHARINGS
    kind: ClassVar = "sharing.type"

    type: str = "hard"
    tower_units: list[int] = field(default_factory=lambda: [32])
    dropout: float = 0.1
    activation: str = "gelu"
    sub_configs: dict = sub_configs()
    origins: dict = origins()


@dataclass
class TaskConfig:
    """One named task: its type, label column, loss weight w_i and metrics.

    `classes` fixes the class names and their order (for `binary`, the second
    is the positive class); otherwise they are read from the training split.
    `data` gives the task a dataset of its own (same keys as the top-level
    `data`): its examples carry this task's label only, and it needs every
    modality's columns (missing values allowed).

    `depends_on` (binary tasks): the task's output is `p(t) = p(other) × p(t | other)`
    (`combine: product`, ESMM, Ma et al., SIGIR 2018), trained on the entire space with the
    label of `t` (e.g. converted, over all impressions); the head itself, `p(t | other)`,
    is never supervised directly and is exported as `<t>_conditional`.

    `group` (binary tasks): a column whose values group the rows (e.g. `user_id`); evaluation then
    also reports the ranking metrics within groups, `gauc` and `ndcg@<ndcg_k>`.

    `modality` (token tasks, `token_tagging`): the text modality whose tokens are tagged; the
    head reads that modality's encoder per token (`keras_mtmm.tasks.token_tagging`). A
    `masked_language_model` task (`mask_rate`: the fraction of tokens hidden) needs no label: its
    targets are that modality's own tokens (`keras_mtmm.tasks.masked_lm`).
    """

    type: str = ""
    label: str = ""
    weight: float = 1.0
    metrics: list[str] | None = None
    classes: list[str] | None = None
    top_k: int = 2
    data: DataConfig | None = None
    depends_on: str | None = None
    combine: str = "product"
    group: str | None = None
    ndcg_k: int = 10
    modality: str | None = None
    mask_rate: float = 0.15


@dataclass
class WeightingConfig(OneOfConfig):
    """How task losses are combined into `L = Σ_i w_i L_i`.

    Loss-only: `static` (tasks.<t>.weight), `inverse_size` (w_i ∝ 1/n_i),
    `uncertainty` (learned log-variances), `dwa` (`temperature`), `rlw`,
    `famo` (`famo_learning_rate`, `famo_gamma`, `famo_update`: `same_batch` or `next_batch`).
    Gradient-based (per-task gradients of the shared parameters): `pcgrad`,
    `cagrad` (`cagrad_c`), `mgda`, `gradnorm` (`alpha`, `gradnorm_learning_rate`),
    `graddrop` (`graddrop_leak`), `gradvac` (`gradvac_beta`), `db_mtl`
    (`db_mtl_beta`, `db_mtl_beta_sigma`), `nash_mtl`, `imtl`, `upgrad`, `aligned_mtl`.
    Each strategy declares its keys (`config_class`, in `keras_mtmm.weighting`);
    they go under `weighting.<strategy>:` or flat, and a value given to a strategy
    that is not selected is checked and kept.
    """

    registry: ClassVar = WEIGHTINGS
    selector: ClassVar = "strategy"
    kind: ClassVar = "weighting.strategy"

    strategy: str = "static"
    sub_configs: dict = sub_configs()
    origins: dict = origins()


@dataclass
class TrainingConfig:
    """The optimizer and the fit loop.

    How it executes (see `keras_mtmm.training.execution`; each `auto` choice is said
    in the run log): `cache` preprocesses the training split once and keeps
    it in memory, reshuffling examples every epoch (`auto`: when it fits the
    memory budget); `steps_per_execution` runs several steps per call into
    TensorFlow (`auto`: up to 32, a divisor of the epoch); `jit_compile`
    compiles with XLA (`auto`: where an accelerator is present);
    `deterministic` makes TF's ops deterministic (reproducible runs).

    `distribute`: `none` (one device), `mirrored` (all local devices, with
    `fit`) or `multi_worker` (the cluster in `TF_CONFIG`, a custom
    distributed loop). `checkpoint_every`: save the training state every N
    steps (0: at the end of every epoch); a rerun with the same output
    folder resumes from it.

    The optimizer (Keras 3's own): `optimizer` `adam` (default), `adamw` or
    `sgd` (with `momentum`); `weight_decay` (decoupled, as Keras applies it;
    0: none); `clipnorm` clips each gradient's norm (null: no clipping);
    `lr_schedule` `constant` or `cosine` (from `learning_rate` down to 0 over
    all the training steps, after `warmup_steps` of linear warm-up from 0).
    """

    epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 0.002
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    clipnorm: float | None = None
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    early_stopping_patience: int = 4
    steps_per_epoch: int | None = None
    shuffle_buffer: int = 4096
    deterministic: bool = True
    jit_compile: bool | str = "auto"
    steps_per_execution: int | str = "auto"
    cache: bool | str = "auto"
    output_dir: str = "runs"
    distribute: str = "none"
    checkpoint_every: int = 0


@dataclass
class ExportConfig:
    """Where the SavedModel for TF Serving goes: `<dir>/<name>/<version>/`."""

    dir: str = "saved_models"
    version: int | None = None


@dataclass
class ExperimentConfig:
    """A whole experiment, as read from one YAML file."""

    name: str = "experiment"
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    modalities: dict[str, ModalityConfig] = field(default_factory=dict)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    sharing: SharingConfig = field(default_factory=SharingConfig)
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    tune: TuneConfig | None = None  # a hyperparameter search (`mtmm tune`; train.py reads none of it)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML-ready data (the resolved config)."""
        return to_plain(self)

    def to_yaml(self) -> str:
        """The resolved config as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------------
# Loading
