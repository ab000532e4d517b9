"""The shared base of gradient-based weighting strategies (PCGrad, CAGrad, MGDA, GradNorm).

These need per-task gradients of the **shared** parameters, so they run in
the model's `train_step` (see `keras_mtmm.models.multitask.MultiTaskModel`). Per-task
gradients come from one persistent tape, one backward pass per task over
the shared variables only. On this project's 2-core CPUs that measured about
2× faster than `GradientTape.jacobian` with vectorized maps (pfor) for
T = 2–5 on the demo model (benchmarks/weighting_overhead.py); MGDA and
GradNorm need far smaller Jacobians (of the representation, of one layer)
and use `jacobian`. Task-specific parameters (heads, towers, gates) take the
ordinary gradient of `Σ_i w_i L_i`, in one pass.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from keras_mtmm.weighting.base import WeightingStrategy
from keras_mtmm.weighting.replicas import replica_mean


def flat_jacobian(tape: tf.GradientTape, task_losses: tf.Tensor, variables: list) -> tf.Tensor:
    """Per-task gradients `[T, P]` of the loss vector with respect to `variables`, flattened.

    One `tape.gradient` per task (T is static); disconnected variables and
    sparse (embedding) gradients become dense zeros/values.
    """
    backend = backend_variables(variables)
    num_tasks = task_losses.shape[0]
    rows = []
    for task in range(num_tasks):
        # A one-hot output gradient selects the task without adding ops to the (closed) tape.
        selector = tf.one_hot(task, num_tasks, dtype=task_losses.dtype)
        grads = tape.gradient(
            task_losses, backend, output_gradients=selector, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        rows.append(tf.concat([tf.reshape(tf.convert_to_tensor(g), [-1]) for g in grads], axis=0))
    return tf.stack(rows)


def weighted_gradient(tape: tf.GradientTape, task_losses: tf.Tensor, variables: list, weights: tf.Tensor) -> list:
    """Gradients of `Σ_i weights_i · task_losses_i` (one backward pass, weights as output gradients)."""
    return tape.gradient(
        task_losses,
        backend_variables(variables),
        output_gradients=tf.stop_gradient(weights),
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )


def backend_variables(variables: list) -> list:
    """The `tf.Variable`s behind Keras variables (`jacobian` needs TF dtypes, not Keras' strings)."""
    return [getattr(v, "value", v) for v in variables]


def unflatten(vector: tf.Tensor, variables: list) -> list[tf.Tensor]:
    """Split a flat `[P]` vector into tensors shaped like `variables`."""
    sizes = [math.prod(v.shape) for v in variables]
    return [tf.reshape(part, v.shape) for part, v in zip(tf.split(vector, sizes), variables)]


class GradientWeighting(WeightingStrategy):
    """Base for strategies that combine per-task gradients of the shared parameters.

    Subclasses implement `shared_gradient(task_gradients, task_losses, present)`,
    returning the combined `[P]` gradient and the effective task weights `[T]`.

    Args:
        task_names: the tasks, in order.
        task_weights: base weights w_i applied to the task losses first.
    """

    uses_gradients = True

    @classmethod
    def from_settings(cls, weighting, context):
        return cls(context.task_names, context.weights, name="weighting")

    def __init__(self, task_names: list[str], task_weights: list[float] | None = None, **kwargs):
        super().__init__(task_names, **kwargs)
        if len(self.task_names) < 2:
            raise ValueError(f"{type(self).__name__}: needs at least 2 tasks, got {self.task_names}")
        task_weights = [1.0] * self.num_tasks if task_weights is None else [float(w) for w in task_weights]
        if len(task_weights) != self.num_tasks:
            raise ValueError(f"{type(self).__name__}: expected {self.num_tasks} task_weights, got {task_weights}")
        self.task_weights_list = task_weights

    def build(self, input_shape=None):
        super().build(input_shape)
        # Σ over the steps of the tasks' pairwise gradient cosines (conflicts are negative); reports read the mean.
        self.cosine_sum = self.add_weight(
            shape=(self.num_tasks, self.num_tasks),
            initializer="zeros",
            trainable=False,
            name="cosine_sum",
            aggregation="only_first_replica",
        )

    def record_cosines(self, task_gradients) -> None:
        """Add one step's pairwise cosine similarities of the task gradients (rows of `[T, P]`)."""
        norms = tf.norm(task_gradients, axis=1, keepdims=True)
        unit = task_gradients / tf.maximum(norms, 1e-12)
        cosines = tf.matmul(unit, unit, transpose_b=True)
        self.cosine_sum.assign_add(tf.cast(tf.stop_gradient(cosines), self.cosine_sum.dtype))

    def mean_cosines(self) -> dict[str, float]:
        """The mean pairwise gradient cosines since the last reset, keyed `<task a>__<task b>` (a before b)."""
        count = float(keras.ops.convert_to_numpy(self.weight_count))
        if count == 0:
            return {}
        sums = np.asarray(keras.ops.convert_to_numpy(self.cosine_sum)) / count
        return {
            f"{a}__{b}": float(sums[i, j])
            for i, a in enumerate(self.task_names)
            for j, b in enumerate(self.task_names)
            if i < j
        }

    def reset_recorded_weights(self) -> None:
        super().reset_recorded_weights()
        self.cosine_sum.assign(keras.ops.zeros_like(self.cosine_sum))

    def base_weights(self, dtype):
        return keras.ops.convert_to_tensor(self.task_weights_list, dtype=dtype)

    def task_weights(self, task_losses, present, training):
        # Used for the reported (evaluation) loss: the plain weighted sum.
        return self.base_weights(task_losses.dtype)

    def gradients(self, tape, task_losses, present, shared_variables, specific_variables, representation=None):
        """Gradients for (shared, specific) variables and the effective weights [T].

        `task_losses` must have been computed inside `tape`; nothing here is
        recorded on it: weights enter as row scalings of the Jacobian and as
        `output_gradients`, not as new ops on the losses.
        """
        scale = self.base_weights(task_losses.dtype) * present
        # Under tf.distribute, the mean of the replicas' Jacobians is the global batch's (distributed.py).
        task_gradients = replica_mean(flat_jacobian(tape, task_losses, shared_variables)) * scale[:, None]
        self.record_cosines(task_gradients)
        shared, effective = self.shared_gradient(task_gradients, task_losses * scale, present)
        specific = weighted_gradient(tape, task_losses, specific_variables, scale)
        return unflatten(shared, shared_variables), specific, effective * self.base_weights(task_losses.dtype)

    def shared_gradient(self, task_gradients, task_losses, present):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "task_weights": self.task_weights_list}
