"""CAGrad: conflict-averse gradient descent.

Liu, Liu, Jin, Stone, Liu, "Conflict-Averse Gradient Descent for Multi-task
Learning", NeurIPS 2021.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_mtmm.registries import WEIGHTINGS
from keras_mtmm.weighting.gradient import GradientWeighting


def cagrad_direction(task_gradients: tf.Tensor, present: tf.Tensor, c: float, iterations: int = 20):
    """CAGrad's update `g = g0 + (c‖g0‖/‖g_w‖) g_w`, and its coefficients on the task gradients.

    g0 is the mean gradient of the present tasks; `g_w = Σ_i w_i g_i` with w
    on the simplex (over present tasks) minimising `g_w·g0 + c‖g0‖‖g_w‖`,
    found by gradient steps on softmax logits over the Gram matrix (as the
    authors' code does).

    Returns:
        `(g [P], coefficients [T])` with `g = Σ_i coefficients_i g_i`.
    """
    dtype = task_gradients.dtype
    count = tf.maximum(tf.reduce_sum(present), 1.0)
    mean_weights = present / count
    gram = tf.matmul(task_gradients, task_gradients, transpose_b=True)
    g0_norm = tf.sqrt(tf.maximum(tf.tensordot(mean_weights, tf.linalg.matvec(gram, mean_weights), 1), 0.0))
    radius = c * g0_norm
    logits = tf.where(present > 0, tf.zeros_like(present), tf.fill(tf.shape(present), tf.constant(-1e9, dtype)))
    learning_rate = 1.0
    for _ in range(iterations):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            w = tf.nn.softmax(logits)
            gw_dot_g0 = tf.tensordot(w, tf.linalg.matvec(gram, mean_weights), 1)
            gw_norm = tf.sqrt(tf.maximum(tf.tensordot(w, tf.linalg.matvec(gram, w), 1), 1e-20))
            objective = gw_dot_g0 + radius * gw_norm
        logits = logits - learning_rate * tape.gradient(objective, logits)
    w = tf.stop_gradient(tf.nn.softmax(logits))
    gw_norm = tf.sqrt(tf.maximum(tf.tensordot(w, tf.linalg.matvec(gram, w), 1), 1e-20))
    scale = radius / gw_norm
    coefficients = mean_weights + scale * w
    return tf.linalg.matvec(task_gradients, coefficients, transpose_a=True), coefficients


@WEIGHTINGS.register("cagrad")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class CAGrad(GradientWeighting):
    """Moves along the average gradient, bent toward the worst-off task within radius c‖g0‖.

    Args:
        task_names: the tasks, in order.
        task_weights: base weights w_i (gradients are of w_i·L_i).
        c: the radius factor (the paper uses 0.4–0.5); 0 gives plain averaging.
    """

    def __init__(self, task_names: list[str], task_weights: list[float] | None = None, c: float = 0.4, **kwargs):
        super().__init__(task_names, task_weights, **kwargs)
        if c < 0:
            raise ValueError(f"CAGrad: c must be >= 0, got {c}")
        self.c = float(c)

    def shared_gradient(self, task_gradients, task_losses, present):
        return cagrad_direction(task_gradients, present, self.c)

    def get_config(self):
        return {**super().get_config(), "c": self.c}
