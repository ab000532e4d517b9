"""PCGrad: project conflicting task gradients.

Yu, Kumar, Gupta, Levine, Hausman, Finn, "Gradient Surgery for Multi-Task
Learning", NeurIPS 2020.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_mtmm.registries import WEIGHTINGS
from keras_mtmm.weighting.gradient import GradientWeighting


def project_conflicting(task_gradients: tf.Tensor, order: tf.Tensor) -> tf.Tensor:
    """PCGrad's surgery: returns the sum of the projected task gradients, `[P]`.

    For each task gradient g_i, for j in `order` (j ≠ i): if `g_i·g_j < 0`,
    `g_i ← g_i − (g_i·g_j / ‖g_j‖²) g_j`. Zero gradients (absent tasks) are skipped.

    Args:
        task_gradients: `[T, P]`, T static.
        order: a permutation of range(T) (random each step in training).
    """
    num_tasks = task_gradients.shape[0]
    projected = []
    for i in range(num_tasks):
        g_i = task_gradients[i]
        for position in range(num_tasks):
            j = order[position]
            g_j = tf.gather(task_gradients, j)
            dot = tf.reduce_sum(g_i * g_j)
            norm_sq = tf.reduce_sum(g_j * g_j)
            conflict = tf.logical_and(tf.logical_and(tf.not_equal(j, i), dot < 0), norm_sq > 0)
            g_i = tf.where(conflict, g_i - dot / tf.maximum(norm_sq, 1e-20) * g_j, g_i)
        projected.append(g_i)
    return tf.add_n(projected)


@WEIGHTINGS.register("pcgrad")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class PCGrad(GradientWeighting):
    """Sums the task gradients after removing, pairwise in random order, their conflicting components.

    Args:
        task_names: the tasks, in order.
        task_weights: base weights w_i (gradients are of w_i·L_i).
        seed: seeds the random task order.
    """

    def __init__(self, task_names: list[str], task_weights: list[float] | None = None, seed: int = 0, **kwargs):
        super().__init__(task_names, task_weights, **kwargs)
        self.seed = int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def shared_gradient(self, task_gradients, task_losses, present):
        order = keras.random.shuffle(tf.range(self.num_tasks), seed=self.seed_generator)
        return project_conflicting(task_gradients, order), tf.ones([self.num_tasks], task_gradients.dtype)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
