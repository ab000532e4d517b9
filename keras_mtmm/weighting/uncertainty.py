"""Uncertainty weighting: learned homoscedastic task uncertainty.

Kendall, Gal, Cipolla, "Multi-Task Learning Using Uncertainty to Weigh
Losses for Scene Geometry and Semantics", CVPR 2018.
"""

from __future__ import annotations

import keras

from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.weighting.base import WeightingStrategy


@WEIGHTINGS.register("uncertainty")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class UncertaintyWeighting(WeightingStrategy):
    """`L = Σ_i c_i·exp(−s_i)·L_i + ½·s_i` with learned `s_i = log σ_i²`.

    `c_i = ½` for regression tasks (Gaussian likelihood) and 1 for
    classification (the paper's two forms). The log-variances are trainable
    weights of this layer, so they are saved with the model; the weight a
    task gets is `c_i·exp(−s_i)`. A task without labels in the batch adds
    neither term.

    Args:
        task_names: the tasks, in order.
        regression: per task, whether it is a regression task.

    Example:
        >>> UncertaintyWeighting(["depth", "label"], regression=[True, False])
    """

    @classmethod
    def from_settings(cls, weighting, context):
        regression = [context.task_types[task] == "regression" for task in context.task_names]
        return cls(context.task_names, regression, name="weighting")

    def __init__(self, task_names: list[str], regression: list[bool], **kwargs):
        super().__init__(task_names, **kwargs)
        regression = [bool(r) for r in regression]
        if len(regression) != self.num_tasks:
            raise ValueError(f"UncertaintyWeighting: expected {self.num_tasks} regression flags, got {regression}")
        self.regression = regression

    def build(self, input_shape=None):
        super().build(input_shape)
        self.log_variances = self.add_weight(
            shape=(self.num_tasks,), initializer="zeros", trainable=True, name="log_variances"
        )

    def task_weights(self, task_losses, present, training):
        scale = keras.ops.convert_to_tensor([0.5 if r else 1.0 for r in self.regression], dtype=task_losses.dtype)
        return scale * keras.ops.exp(-keras.ops.cast(self.log_variances, task_losses.dtype))

    def call(self, task_losses, present, training=False):
        weights = self.task_weights(task_losses, present, training)
        log_variances = keras.ops.cast(self.log_variances, task_losses.dtype)
        total = keras.ops.sum(present * (weights * task_losses + 0.5 * log_variances))
        if training:
            self.record(weights)
        return total

    def sigmas(self) -> dict[str, float]:
        """The learned σ_i = exp(s_i / 2) per task."""
        values = keras.ops.convert_to_numpy(keras.ops.exp(0.5 * self.log_variances))
        return {task: float(v) for task, v in zip(self.task_names, values)}

    def get_config(self):
        return {**super().get_config(), "regression": self.regression}
