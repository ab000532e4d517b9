"""build_model(config, preprocessor) -> a Keras functional model, dict in, dict out.

    modality inputs ─► encoders ─► fusion ─► sharing ─► task heads ─► {task: output}
    modality_presence ─► (modality dropout) ─┘

Inputs are named after the modalities and take the Preprocessor's outputs,
plus `modality_presence` [B, M], which tells fusion what to leave out;
outputs are keyed by task name (probabilities for classification, values for
regression). With decision-level (`late`) fusion each modality gets its own
sharing block and heads, and `LateFusion` averages each task's per-modality
predictions. With `sharing.type: mtan` a cnn image encoder gives one vector
per task, and the fusion layer runs once per task.
"""

from __future__ import annotations

import keras

from keras_mtmm.config.schema import PRESENCE_KEY
from keras_mtmm.layers.encoders import build_encoder
from keras_mtmm.layers.encoders.layers import MaskedMeanPool
from keras_mtmm.layers.fusion import ModalityDropout, TokenMask, build_fusion
from keras_mtmm.layers.heads import TaskHead, TokenHead
from keras_mtmm.layers.masking import TokenMasking
from keras_mtmm.layers.sharing import build_sharing
from keras_mtmm.registry import ENCODERS, FUSIONS, SHARINGS
from keras_mtmm.tasks import get_task_type
from keras_mtmm.tasks.masked_lm import MASK_TOKEN

# With decision-level fusion, the fusion layer of each task (what `NetworkParts.task_fusion` finds).
TASK_FUSION = "fusion_{task}"


# The output of a dependent task's own head, p(t | parent), beside the task's output p(t).
CONDITIONAL_SUFFIX = "_conditional"


def build_model(config, preprocessor) -> keras.Model:
    """Build the multi-task, multi-modal model an experiment config describes.

    Args:
        config: the `ExperimentConfig`.
        preprocessor: the adapted `Preprocessor` (gives input shapes, vocabulary
            sizes and class counts).

    Returns:
        An uncompiled `keras.Model` taking `{modality: tensor, "modality_presence": [B, M]}`
        (what `Preprocessor.transform` gives) and returning `{task: tensor}`, plus
        `{task}_conditional` for each task with `depends_on`.
    """
    specs = preprocessor.model_input_specs()
    inputs = {name: keras.Input(shape=shape, dtype=dtype, name=name) for name, (shape, dtype) in specs.items()}
    layer_class = FUSIONS.get(config.fusion.strategy, "fusion.strategy")
    sequences = getattr(layer_class, "takes_sequences", False)
    token_tasks = {task: t for task, t in config.tasks.items() if get_task_type(t.type).per_token}
    task_names = [task for task in config.tasks if task not in token_tasks]  # one output per example
    tokens_read = {t.modality for t in token_tasks.values()}
    # MTAN: each cnn image encoder becomes a shared conv base read through per-task attention ({task: vector}).
    attended_encoder = getattr(SHARINGS.get(config.sharing.type, "sharing.type"), "build_image_encoder", None)
    features, token_features, encoders = {}, {}, {}
    for name, modality in config.modalities.items():
        if attended_encoder is not None and modality.type == "image" and modality.encoder.type == "cnn":
            encoder = attended_encoder(name, modality.encoder, task_names)
        else:
            per_token = sequences or name in tokens_read
            encoder = build_encoder(name, modality, preprocessor.vocabulary_sizes(name), return_sequence=per_token)
        encoders[name] = encoder
        features[name] = encoder(inputs[name])
        if name in tokens_read:  # token tasks read the sequence; fusion its mean (or the sequence, if it takes them)
            token_features[name] = features[name]
            if not sequences:
                features[name] = MaskedMeanPool(name=f"{name}_pool")(features[name], inputs[name])
    outputs = _example_outputs(config, preprocessor, inputs, features, task_names, layer_class) if task_names else {}
    for task, task_config in token_tasks.items():
        ids, classes = inputs[task_config.modality], preprocessor.classes(task)
        if get_task_type(task_config.type).reads_vocabulary:  # a masked language model: a pass over masked text
            masking = TokenMasking(
                task_config.mask_rate, classes.index(MASK_TOKEN), config.seed, name=f"{task}_masking"
            )
            masked, asked = masking(ids)
            sequence = encoders[task_config.modality](masked)
        else:
            sequence, asked = token_features[task_config.modality], TokenMask(from_ids=True, name=f"{task}_tokens")(ids)
        outputs[task] = TokenHead(len(classes), name=f"head_{task}")(sequence, asked)
    outputs = {task: outputs[task] for task in config.tasks}  # (in the config's order)
    outputs = _dependencies(config, outputs)
    # Identity layers named after the tasks give the outputs their serving names.
    outputs = {name: keras.layers.Identity(name=name)(output) for name, output in outputs.items()}
    return keras.Model(inputs=inputs, outputs=outputs, name=config.name)


def _example_outputs(config, preprocessor, inputs: dict, features: dict, task_names: list[str], layer_class) -> dict:
    """The outputs of the tasks with one prediction per example: fusion, sharing, their heads."""
    fusion = config.fusion
    sequences = getattr(layer_class, "takes_sequences", False)
    presence = inputs[PRESENCE_KEY]
    if fusion.modality_dropout:
        rates = [fusion.modality_dropout.get(name, 0.0) for name in config.modalities]
        presence = ModalityDropout(rates, seed=config.seed, name="modality_dropout")(presence)
    if layer_class.is_decision_level:
        per_modality = {
            name: _heads(
                config, preprocessor, _sharing(config, task_names, f"sharing_{name}")(feature), task_names, f"_{name}"
            )
            for name, feature in features.items()
        }
        outputs = {}
        for task in task_names:
            layer = _fusion(config, TASK_FUSION.format(task=task), task_names)
            outputs[task] = layer([per_modality[name][task] for name in features], presence)
    else:
        layer = _fusion(config, "fusion", task_names)
        feature_list = [features[name] for name in config.modalities]
        if sequences:
            masks = [
                TokenMask(from_ids=_token_ids(config, name), name=f"{name}_token_mask")(
                    inputs[name] if _token_ids(config, name) else features[name]
                )
                for name in config.modalities
            ]
            fused = layer(feature_list, presence, token_masks=masks)
        elif any(isinstance(feature, dict) for feature in feature_list):  # per-task features: one fusion per task
            fused = {task: _own(layer([_own(f, task) for f in feature_list], presence), task) for task in task_names}
        else:
            fused = layer(feature_list, presence)
        sharing = _sharing(config, task_names, "sharing")
        if getattr(sharing, "takes_task_inputs", False):
            towers = sharing(fused)
        elif isinstance(fused, dict):
            # Task-conditioned fusion: one sharing block (shared weights), each task reading its own fused vector.
            towers = {task: sharing(fused[task])[task] for task in task_names}
        else:
            towers = sharing(fused)
        outputs = _heads(config, preprocessor, towers, task_names, suffix="")
    return outputs


def _fusion(config, name: str, task_names: list[str]):
    fusion = config.fusion
    return build_fusion(fusion.strategy, len(config.modalities), name, task_names, fusion.get())


def dependency_order(tasks: dict) -> list[str]:
    """The tasks with `depends_on`, each after the task it depends on (the config checks forbid cycles)."""
    order: list[str] = []

    def visit(task):
        parent = tasks[task].depends_on
        if parent is not None and parent not in order:
            visit(parent)
        if task not in order:
            order.append(task)

    for task in tasks:
        if tasks[task].depends_on is not None:
            visit(task)
    return [task for task in order if tasks[task].depends_on is not None]


def _dependencies(config, outputs: dict) -> dict:
    """ESMM: a dependent task's output is `p(parent) × p(t | parent)`, its head's own output `<t>_conditional`."""
    outputs = dict(outputs)
    for task in dependency_order(config.tasks):
        conditional = outputs[task]
        outputs[task] = keras.layers.Multiply(name=f"{task}_product")(
            [outputs[config.tasks[task].depends_on], conditional]
        )
        outputs[f"{task}{CONDITIONAL_SUFFIX}"] = conditional
    return outputs


def _own(value, task: str):
    """A task's entry of a per-task dict; anything else is every task's."""
    return value[task] if isinstance(value, dict) else value


def _token_ids(config, name: str) -> bool:
    """Whether a modality's model input is token ids (0 = padding), aligned with its encoder's sequence."""
    modality = config.modalities[name]
    return modality.type == "text" and getattr(ENCODERS.get(modality.encoder.type), "reads_token_ids", False)


def _sharing(config, task_names: list[str], name: str):
    return build_sharing(config.sharing, task_names, name=name)


def _heads(config, preprocessor, towers: dict, task_names: list[str], suffix: str) -> dict:
    outputs = {}
    for task in task_names:
        task_config = config.tasks[task]
        task_type = get_task_type(task_config.type)
        units = task_type.output_units(len(preprocessor.classes(task)))
        offset, scale = preprocessor.target_statistics(task)
        head = TaskHead(
            units=units,
            activation=task_type.activation,
            target_scale=scale,
            target_offset=offset,
            name=f"head_{task}{suffix}",
        )
        outputs[task] = head(towers[task])
    return outputs


class NetworkParts:
    """The parts of a built network, found by what they are (their registered classes), not by layer names.

    `fusion` is the fusion layer that feeds the sharing block (None with decision-level fusion, where each
    task has its own: `fusions`); `sharing` the sharing block (None with decision-level fusion, where each
    modality has its own: `sharings`).
    """

    def __init__(self, network: keras.Model):
        self.network = network

    @property
    def fusions(self) -> list:
        return [layer for layer in self.network.layers if FUSIONS.holds(type(layer))]

    @property
    def sharings(self) -> list:
        return [layer for layer in self.network.layers if SHARINGS.holds(type(layer))]

    def task_fusion(self, task: str):
        """A task's own fusion layer with decision-level fusion, else None."""
        layer = next((layer for layer in self.fusions if layer.name == TASK_FUSION.format(task=task)), None)
        return layer if layer is not None and layer.is_decision_level else None

    @property
    def fusion(self):
        fusions = [layer for layer in self.fusions if not layer.is_decision_level]
        return fusions[0] if len(fusions) == 1 else None

    @property
    def sharing(self):
        sharings, decision_level = self.sharings, any(layer.is_decision_level for layer in self.fusions)
        return sharings[0] if len(sharings) == 1 and not decision_level else None
