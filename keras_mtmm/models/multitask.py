"""The training model: `compile_model` wraps a network (`network.build_model`) into a `MultiTaskModel`."""

from __future__ import annotations

import keras

from keras_mtmm.models.network import NetworkParts
from keras_mtmm.models.optimizers import build_optimizer
from keras_mtmm.tasks import get_task_type
from keras_mtmm.weighting import build_weighting
from keras_mtmm.weighting.gradient import backend_variables
from keras_mtmm.weighting.replicas import global_task_losses, num_replicas


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
    model = MultiTaskModel(network, weighting, losses, preprocessor=preprocessor, name=f"{network.name}_training")
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
        preprocessor: the adapted `Preprocessor` (a Keras layer), saved inside the `.keras` file with
            its state as assets, so a loaded checkpoint takes raw inputs (None for a checkpoint from before).
        representation_layer: kept for checkpoints written before the fusion layer became the
            `fusion` property; the shared representation (for MGDA-UB) is that layer's output.

    `loss_tracker` is the model's own `Mean("loss")`, in `metrics` in place of Keras' (which the
    gradient path's own `train_step` would leave at 0): `compute_loss` and the gradient path both
    update it with the step's total loss.
    """

    def __init__(
        self, network, weighting, task_losses: dict, representation_layer: str = "fusion", preprocessor=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.network = network
        self.preprocessor = preprocessor
        self.weighting = weighting
        self.task_names = list(weighting.task_names)
        missing = [task for task in self.task_names if task not in task_losses]
        if missing:
            raise ValueError(f"MultiTaskModel: no loss for tasks {missing}")
        self.task_losses = {task: task_losses[task] for task in self.task_names}
        self.representation_layer = representation_layer
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.task_loss_trackers = [keras.metrics.Mean(name=f"{task}_loss") for task in self.task_names]
        # Held in plain objects so that Keras does not track them as this model's own state.
        self._roles = _Untracked(None)
        self._representation_network = _Untracked(None)
        if not weighting.built:
            weighting.build(None)
            weighting.built = True
        self.built = network.built  # a functional network is built at construction

    def call(self, inputs, training=False):
        outputs = self.network(inputs, training=training)  # (and a dependent task's `<t>_conditional`)
        return {task: outputs[task] for task in self.task_names}

    @property
    def fusion(self):
        """The fusion layer feeding the sharing block (None with decision-level fusion)."""
        return NetworkParts(self.network).fusion

    @property
    def sharing(self):
        """The sharing block (None with decision-level fusion: one per modality)."""
        return NetworkParts(self.network).sharing

    @property
    def metrics(self):
        """The total loss (this model's own tracker), the task losses, then Keras' compiled metrics."""
        own = [self.loss_tracker, *self.task_loss_trackers]
        return own + [metric for metric in super().metrics if metric.name != "loss" and metric not in own]

    def task_loss_vector(self, y, y_pred, sample_weight):
        """(task losses [T], present [T], global losses [T]); present: the global batch has a labelled example.

        Under tf.distribute the losses are valued as the global batch's and graded as this replica's
        share (`keras_mtmm.training.distributed.global_task_losses`); with one replica, the plain losses.
        """
        losses, counts = [], []
        for task in self.task_names:
            mask = None if sample_weight is None else sample_weight[task]
            losses.append(self.task_losses[task](y[task], y_pred[task], sample_weight=mask))
            weights_of = getattr(self.task_losses[task], "weights_of", None)  # (a loss over some positions only)
            if weights_of is not None:
                counts.append(keras.ops.cast(keras.ops.sum(weights_of(y_pred[task], mask)), losses[-1].dtype))
            elif mask is None:
                counts.append(keras.ops.cast(_batch_size(y_pred), losses[-1].dtype))
            else:
                counts.append(keras.ops.cast(keras.ops.sum(mask), losses[-1].dtype))
        return global_task_losses(keras.ops.stack(losses), keras.ops.stack(counts))

    def _track_losses(self, total, global_losses, batch_size):
        # Every replica records the global value (Keras averages the trackers over replicas).
        self.loss_tracker.update_state(total, sample_weight=batch_size)
        for i, tracker in enumerate(self.task_loss_trackers):
            tracker.update_state(global_losses[i], sample_weight=batch_size)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        losses, present, global_losses = self.task_loss_vector(y, y_pred, sample_weight)
        total = self.weighting(losses, present, training=training)
        if self.network.losses:
            total = total + keras.ops.sum(self.network.losses)
        self._track_losses(total, global_losses, _batch_size(y_pred))
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
        self._track_losses(total, global_losses, _batch_size(y_pred))
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
            layer = self.fusion
            if layer is None:
                raise ValueError(
                    f"MultiTaskModel: {type(self.weighting).__name__} needs the shared representation, "
                    "but the network has no single fusion layer (decision-level fusion)"
                )
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
            **({"preprocessor": keras.saving.serialize_keras_object(self.preprocessor)} if self.preprocessor else {}),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        network = keras.saving.deserialize_keras_object(config.pop("network"))
        weighting = keras.saving.deserialize_keras_object(config.pop("weighting"))
        losses = {t: keras.saving.deserialize_keras_object(v) for t, v in config.pop("task_losses").items()}
        if config.get("preprocessor") is not None:  # adapted when Keras loads its assets, after this
            config["preprocessor"] = keras.saving.deserialize_keras_object(config["preprocessor"])
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
