"""Random Loss Weighting (RLW).

Lin, Ye, Xu, Shi, Zhang, "Reasonable Effectiveness of Random Weighting: A
Litmus Test for Multi-Task Learning", TMLR 2022.
"""

from __future__ import annotations

import keras

from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.weighting.base import WeightingStrategy


@WEIGHTINGS.register("rlw")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class RandomLossWeighting(WeightingStrategy):
    """Each training step draws `w = softmax(z)`, `z ~ N(0, I_T)` (weights sum to 1).

    Evaluation uses the expected weight 1/T per task.

    Args:
        task_names: the tasks, in order.
        seed: seeds the weight draws (the generator state is a layer variable).

    Example:
        >>> RandomLossWeighting(["a", "b", "c"], seed=0)
    """

    @classmethod
    def from_settings(cls, weighting, context):
        return cls(context.task_names, seed=context.seed, name="weighting")

    def __init__(self, task_names: list[str], seed: int = 0, **kwargs):
        super().__init__(task_names, **kwargs)
        self.seed = int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def task_weights(self, task_losses, present, training):
        if not training:
            return keras.ops.full((self.num_tasks,), 1.0 / self.num_tasks, dtype=task_losses.dtype)
        draws = keras.random.normal((self.num_tasks,), seed=self.seed_generator, dtype=task_losses.dtype)
        return keras.ops.softmax(draws)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
