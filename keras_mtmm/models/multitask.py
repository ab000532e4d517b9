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
from keras_mtmm.layers.fusion import ModalityDropout, TokenMask, build_fusion
from keras_mtmm.layers.heads import TaskHead, get_task_type
from keras_mtmm.layers.sharing import build_sharing
from keras_mtmm.registry import ENCODERS, FUSIONS, SHARINGS
from keras_mtmm.training.distributed import global_task_losses, num_replicas
from keras_mtmm.training.optimizers import build_optimizer
from keras_mtmm.weighting import build_weighting
from keras_mtmm.weighting.gradient import backend_variables


def build_model(config, preprocessor) -> keras.Model:
    """Build the multi-task, multi-modal model an experiment config describes.

    Args:
        config: the `ExperimentConfig`.
        preprocessor: the adapted `Preprocessor` (gives input shapes, vocabulary
            sizes and class counts).

    Returns:
        An uncompiled `keras.Model` taking `{modality: tensor, "modality_presence": [B, M]}`
        (what `Preprocessor.transform` gives) and returning `{task: tensor}`.
    """
    specs = preprocessor.model_input_specs()
    inputs = {name: keras.Input(shape=shape, dtype=dtype, name=name) for name, (shape, dtype) in specs.items()}
    fusion = config.fusion
    layer_class = FUSIONS.get(fusion.strategy, "fusion.strategy")
    sequences = getattr(layer_class, "takes_sequences", False)
    task_names = list(config.tasks)
    # MTAN: each cnn image encoder becomes a shared conv base read through per-task attention ({task: vector}).
    attended_encoder = getattr(SHARINGS.get(config.sharing.type, "sharing.type"), "build_image_encoder", None)
    features = {}
    for name, modality in config.modalities.items():
        if attended_encoder is not None and modality.type == "image" and modality.encoder.type == "cnn":
            encoder = attended_encoder(name, modality.encoder, task_names)
        else:
            encoder = build_encoder(name, modality, preprocessor.vocabulary_sizes(name), return_sequence=sequences)
        features[name] = encoder(inputs[name])
    presence = inputs[PRESENCE_KEY]
    if fusion.modality_dropout:
        rates = [fusion.modality_dropout.get(name, 0.0) for name in config.modalities]
        presence = ModalityDropout(rates, seed=config.seed, name="modality_dropout")(presence)
    if layer_class.is_decision_level:
        per_modality = {
            name: _heads(
                config, preprocessor, _sharing(config, task_names, f"sharing_{name}")(feature), suffix=f"_{name}"
            )
            for name, feature in features.items()
        }
        outputs = {}
        for task in task_names:
            layer = _fusion(config, f"fusion_{task}")
            outputs[task] = layer([per_modality[name][task] for name in features], presence)
    else:
        layer = _fusion(config, "fusion")
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
        outputs = _heads(config, preprocessor, towers, suffix="")
    # Identity layers named after the tasks give the outputs their serving names.
    outputs = {task: keras.layers.Identity(name=task)(outputs[task]) for task in task_names}
    return keras.Model(inputs=inputs, outputs=outputs, name=config.name)


def _fusion(config, name: str):
    fusion = config.fusion
    return build_fusion(
        fusion.strategy,
        len(config.modalities),
        fusion.units,
        fusion.weights,
        name=name,
        rank=fusion.rank,
        depth=fusion.depth,
        num_heads=fusion.num_heads,
        task_names=list(config.tasks) if fusion.per_task else None,
    )


def _own(value, task: str):
    """A task's entry of a per-task dict; anything else is every task's."""
    return value[task] if isinstance(value, dict) else value


def _token_ids(config, name: str) -> bool:
    """Whether a modality's model input is token ids (0 = padding), aligned with its encoder's sequence."""
    modality = config.modalities[name]
    return modality.type == "text" and getattr(ENCODERS.get(modality.encoder.type), "reads_token_ids", False)


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


def compile_model(
    network: keras.Model,
    config,
    preprocessor,
    task_weights: dict[str, float],
    seed: int = 0,
    steps_per_epoch: int | None = None,
    jit_compile: bool | None = None,
    steps_per_execution: int | None = None,
):
    """Wrap the network with its task losses and weighting strategy, and compile it.

    `steps_per_epoch` sizes a `cosine` learning-rate schedule (see `build_optimizer`).
    `jit_compile`, `steps_per_execution`: the resolved settings of `train` (`keras_mtmm.training.execution`); by
    default the config's, `auto` being no XLA and one step per execution (a caller's `fit` may not divide).

    Each task loss is masked by its per-output sample weight (the label mask)
    and averaged over labelled examples; metrics are `weighted_metrics`, so
    they count only labelled rows too. The weighting strategy combines the
    task losses (`L = Σ_i w_i L_i` for `static`).

    Returns:
        The compiled `MultiTaskModel` (train it; export its `network`).
    """
    losses, metrics = {}, {}
    for task, task_config in config.tasks.items():
        task_type = get_task_type(task_config.type)
        losses[task] = task_type.loss(target_scale=preprocessor.target_statistics(task)[1])
        names = list(task_config.metrics or task_type.default_metrics)
        metrics[task] = task_type.keras_metrics(names, max(len(preprocessor.classes(task)), 1), task_config.top_k)
    task_types = {task: task_config.type for task, task_config in config.tasks.items()}
    parameters = sum(int(keras.ops.size(variable)) for variable in network.trainable_variables)
    weighting = build_weighting(config.weighting, task_types, task_weights, seed, num_parameters=parameters)
    model = MultiTaskModel(network, weighting, losses, name=f"{network.name}_training")
    model.compile(
        optimizer=build_optimizer(config.training, steps_per_epoch),
        weighted_metrics=metrics,
        jit_compile=_setting(jit_compile, config.training.jit_compile, False),
        steps_per_execution=_setting(steps_per_execution, config.training.steps_per_execution, 1),
    )
    # Built here, not in the first step: slots created inside the traced step make tf.function trace it twice.
    model.optimizer.build(model.trainable_variables)
    return model


def _setting(resolved, configured, auto):
    if resolved is not None:
        return resolved
    return auto if configured == "auto" else configured


@keras.saving.register_keras_serializable(package="keras_mtmm")
class MultiTaskModel(keras.Model):
    """The training model: the multi-task network, its task losses and a weighting strategy.

    `call` is the network's; the loss is the weighting strategy's combination
    of the per-task losses (each the mean over the task's labelled examples,
    its per-output sample weight being the label mask). Loss-only strategies
    work through `compute_loss`, so `fit`, callbacks and metrics are Keras'
    own; gradient strategies get per-task gradients of the shared variables
    (those that reach two or more task outputs) in `train_step`.

    Args:
        network: the functional model (dict of inputs -> dict of task outputs).
        weighting: a `WeightingStrategy` layer.
        task_losses: a Keras loss per task.
        representation_layer: the layer whose output is the shared
            representation (for MGDA-UB).
    """

    def __init__(self, network, weighting, task_losses: dict, representation_layer: str = "fusion", **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.weighting = weighting
        self.task_names = list(weighting.task_names)
        missing = [task for task in self.task_names if task not in task_losses]
        if missing:
            raise ValueError(f"MultiTaskModel: no loss for tasks {missing}")
        self.task_losses = {task: task_losses[task] for task in self.task_names}
        self.representation_layer = representation_layer
        self.task_loss_trackers = [keras.metrics.Mean(name=f"{task}_loss") for task in self.task_names]
        # Held in plain objects so that Keras does not track them as this model's own state.
        self._roles = _Untracked(None)
        self._representation_network = _Untracked(None)
        if not weighting.built:
            weighting.build(None)
            weighting.built = True
        self.built = network.built  # a functional network is built at construction

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def task_loss_vector(self, y, y_pred, sample_weight):
        """(task losses [T], present [T], global losses [T]); present: the global batch has a labelled example.

        Under tf.distribute the losses are valued as the global batch's and graded as this replica's
        share (`keras_mtmm.training.distributed.global_task_losses`); with one replica, the plain losses.
        """
        losses, counts = [], []
        for task in self.task_names:
            mask = None if sample_weight is None else sample_weight[task]
            losses.append(self.task_losses[task](y[task], y_pred[task], sample_weight=mask))
            if mask is None:
                counts.append(keras.ops.cast(_batch_size(y_pred), losses[-1].dtype))
            else:
                counts.append(keras.ops.cast(keras.ops.sum(mask), losses[-1].dtype))
        return global_task_losses(keras.ops.stack(losses), keras.ops.stack(counts))

    def _track_task_losses(self, global_losses, batch_size):
        # Every replica records the global value (Keras averages the trackers over replicas).
        for i, tracker in enumerate(self.task_loss_trackers):
            tracker.update_state(global_losses[i], sample_weight=batch_size)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        losses, present, global_losses = self.task_loss_vector(y, y_pred, sample_weight)
        self._track_task_losses(global_losses, _batch_size(y_pred))
        total = self.weighting(losses, present, training=training)
        if self.network.losses:
            total = total + keras.ops.sum(self.network.losses)
        replicas = num_replicas()
        return total / replicas if replicas > 1 else total

    # ------------------------------------------------------------ gradient strategies

    def train_step(self, data):
        if not self.weighting.uses_gradients:
            logs = super().train_step(data)
            if getattr(self.weighting, "updates_after_step", False):  # FAMO: the batch's losses after the step
                x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
                _, present, global_losses = self.task_loss_vector(y, self(x, training=True), sample_weight)
                self.weighting.after_step(keras.ops.stop_gradient(global_losses), present)
            return logs
        import tensorflow as tf

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        needs_representation = getattr(self.weighting, "needs_representation", False)
        with tf.GradientTape(persistent=True) as tape:
            if needs_representation:
                representation, y_pred = self._forward_with_representation(x)
            else:
                representation, y_pred = None, self(x, training=True)
            losses, present, global_losses = self.task_loss_vector(y, y_pred, sample_weight)
            regularization = keras.ops.sum(self.network.losses) if self.network.losses else None
            # Scalars per task output, recorded once, to find which variables each task reaches.
            probes = None if self._roles.value is not None else [keras.ops.sum(y_pred[t]) for t in self.task_names]
        shared, specific = self._partition_variables(tape, probes)
        shared_grads, specific_grads, effective = self.weighting.gradients(
            tape, losses, present, shared, specific, representation
        )
        variables = shared + specific
        grads = list(shared_grads) + list(specific_grads)
        if regularization is not None:
            extra = tape.gradient(
                regularization, backend_variables(variables), unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
            grads = [g + e for g, e in zip(grads, extra)]
        del tape
        replicas = num_replicas()
        if replicas > 1:  # every replica holds the global gradient; the optimizer sums them
            grads = [_scaled(g, 1.0 / replicas) for g in grads]
        self.optimizer.apply_gradients(zip(grads, variables))
        self.weighting.record(effective)
        total = keras.ops.sum(effective * global_losses * present)
        if regularization is not None:
            total = total + regularization
        batch_size = _batch_size(y_pred)
        self._track_task_losses(global_losses, batch_size)
        self._loss_tracker.update_state(total, sample_weight=batch_size)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _partition_variables(self, tape, probes):
        """(shared, task-specific) trainable variables: shared ones reach two or more task outputs.

        Found once, at trace time, from the graph's connectivity (the probe
        gradients are never used, so the graph prunes them).
        """
        variables = list(self.network.trainable_variables)
        if self._roles.value is None:
            reach = [0] * len(variables)
            for probe in probes:
                grads = tape.gradient(probe, variables)
                for i, grad in enumerate(grads):
                    reach[i] += grad is not None
            if max(reach, default=0) < 2:
                raise ValueError(
                    "MultiTaskModel: no variable is shared between tasks; a gradient strategy has nothing to do"
                )
            self._roles.value = [r >= 2 for r in reach]
        shared = [v for v, is_shared in zip(variables, self._roles.value) if is_shared]
        specific = [v for v, is_shared in zip(variables, self._roles.value) if not is_shared]
        return shared, specific

    def _forward_with_representation(self, x):
        if self._representation_network.value is None:
            try:
                layer = self.network.get_layer(self.representation_layer)
            except ValueError:
                raise ValueError(
                    f"MultiTaskModel: {type(self.weighting).__name__} needs the shared representation, "
                    f"but the network has no layer '{self.representation_layer}'"
                ) from None
            outputs = [layer.output] + [self.network.output[task] for task in self.task_names]
            self._representation_network.value = keras.Model(self.network.inputs, outputs)
        outputs = self._representation_network.value(x, training=True)
        return outputs[0], dict(zip(self.task_names, outputs[1:]))

    # ------------------------------------------------------------ serialization

    def get_config(self):
        return {
            "name": self.name,
            "network": keras.saving.serialize_keras_object(self.network),
            "weighting": keras.saving.serialize_keras_object(self.weighting),
            "task_losses": {t: keras.saving.serialize_keras_object(loss) for t, loss in self.task_losses.items()},
            "representation_layer": self.representation_layer,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        network = keras.saving.deserialize_keras_object(config.pop("network"))
        weighting = keras.saving.deserialize_keras_object(config.pop("weighting"))
        losses = {t: keras.saving.deserialize_keras_object(v) for t, v in config.pop("task_losses").items()}
        return cls(network, weighting, losses, **config)


class _Untracked:
    """A plain holder: Keras does not look inside it, so what it holds is not saved as model state."""

    def __init__(self, value):
        self.value = value


def _scaled(gradient, factor: float):
    """A gradient times a constant; embedding gradients stay sparse."""
    import tensorflow as tf

    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values * factor, gradient.indices, gradient.dense_shape)
    return gradient * factor


def _batch_size(y_pred):
    first = next(iter(y_pred.values())) if isinstance(y_pred, dict) else y_pred
    return keras.ops.shape(first)[0]
