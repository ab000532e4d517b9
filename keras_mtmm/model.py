"""build_model(config, preprocessor) -> a Keras functional model, dict in, dict out.

    modality inputs ─► encoders ─► fusion ─► sharing ─► task heads ─► {task: output}

Inputs are named after the modalities and take the Preprocessor's outputs;
outputs are keyed by task name (probabilities for classification, values for
regression). With decision-level (`late`) fusion each modality gets its own
sharing block and heads, and `LateFusion` averages each task's per-modality
predictions.
"""

from __future__ import annotations

import keras

from keras_mtmm.encoders import build_encoder
from keras_mtmm.fusion import build_fusion
from keras_mtmm.heads import TaskHead, get_task_type
from keras_mtmm.registries import FUSIONS
from keras_mtmm.sharing import build_sharing


def build_model(config, preprocessor) -> keras.Model:
    """Build the multi-task, multi-modal model an experiment config describes.

    Args:
        config: the `ExperimentConfig`.
        preprocessor: the adapted `Preprocessor` (gives input shapes, vocabulary
            sizes and class counts).

    Returns:
        An uncompiled `keras.Model` taking `{modality: tensor}` and returning
        `{task: tensor}`.
    """
    specs = preprocessor.model_input_specs()
    inputs = {name: keras.Input(shape=shape, dtype=dtype, name=name) for name, (shape, dtype) in specs.items()}
    features = {
        name: build_encoder(name, modality, preprocessor.vocabulary_sizes(name))(inputs[name])
        for name, modality in config.modalities.items()
    }
    task_names = list(config.tasks)
    fusion = config.fusion
    if FUSIONS.get(fusion.strategy, "fusion.strategy").is_decision_level:
        per_modality = {
            name: _heads(
                config, preprocessor, _sharing(config, task_names, f"sharing_{name}")(feature), suffix=f"_{name}"
            )
            for name, feature in features.items()
        }
        outputs = {}
        for task in task_names:
            layer = build_fusion(fusion.strategy, len(features), fusion.units, fusion.weights, name=f"fusion_{task}")
            outputs[task] = layer([per_modality[name][task] for name in features])
    else:
        layer = build_fusion(fusion.strategy, len(features), fusion.units, fusion.weights, name="fusion")
        fused = layer([features[name] for name in config.modalities])
        outputs = _heads(config, preprocessor, _sharing(config, task_names, "sharing")(fused), suffix="")
    # Identity layers named after the tasks give the outputs their serving names.
    outputs = {task: keras.layers.Identity(name=task)(outputs[task]) for task in task_names}
    return keras.Model(inputs=inputs, outputs=outputs, name=config.name)


def _sharing(config, task_names: list[str], name: str):
    return build_sharing(config.sharing, task_names, name=name)


def _heads(config, preprocessor, towers: dict, suffix: str) -> dict:
    outputs = {}
    for task, task_config in config.tasks.items():
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


def compile_model(model: keras.Model, config, preprocessor, task_weights: dict[str, float]) -> None:
    """Compile with `L = Σ_i w_i L_i` through Keras `loss_weights`.

    Each task loss is masked by its per-output sample weight (the label mask)
    and averaged over labelled examples; metrics are `weighted_metrics`, so
    they count only labelled rows too.
    """
    losses, metrics = {}, {}
    for task, task_config in config.tasks.items():
        task_type = get_task_type(task_config.type)
        losses[task] = task_type.loss(target_scale=preprocessor.target_statistics(task)[1])
        names = list(task_config.metrics or task_type.default_metrics)
        metrics[task] = task_type.keras_metrics(names, max(len(preprocessor.classes(task)), 1), task_config.top_k)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.training.learning_rate),
        loss=losses,
        loss_weights={task: float(task_weights[task]) for task in config.tasks},
        weighted_metrics=metrics,
    )
