"""PCGrad: project conflicting task gradients.

Yu, Kumar, Gupta, Levine, Hausman, Finn, "Gradient Surgery for Multi-Task
Learning", NeurIPS 2020.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.weighting.aggregators import pcgrad
from keras_mtmm.weighting.gradient import GradientWeighting


def project_conflicting(task_gradients: tf.Tensor, order: tf.Tensor) -> tf.Tensor:
    """PCGrad's surgery for a given task order: the sum of the projected task gradients, `[P]`.

    `keras_mtmm.weighting.aggregators.pcgrad` without its weights (see there).
    """
    return pcgrad(task_gradients, order=order)[0]


@WEIGHTINGS.register("pcgrad")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class PCGrad(GradientWeighting):
    """Sums the task gradients after removing, pairwise in random order, their conflicting components.

    Args:
        task_names: the tasks, in order.
        task_weights: base weights w_i (gradients are of w_i·L_i).
        seed: seeds the random task order.
    """

    @classmethod
    def from_settings(cls, weighting, context):
        return cls(context.task_names, context.weights, seed=context.seed, name="weighting")

    def __init__(self, task_names: list[str], task_weights: list[float] | None = None, seed: int = 0, **kwargs):
        super().__init__(task_names, task_weights, **kwargs)
        self.seed = int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def shared_gradient(self, task_gradients, task_losses, present):
        order = keras.random.shuffle(tf.range(self.num_tasks), seed=self.seed_generator)
        return pcgrad(task_gradients, order=order, present=present)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
