"""Fixed task weights: from the config (`static`) or from label counts (`inverse_size`).

Both give a `StaticWeighting` layer whose weights never change.
"""

from __future__ import annotations

import keras

from keras_mtmm.errors import ConfigError, DataError
from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.weighting.base import WeightingStrategy


@WEIGHTINGS.register("static")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class StaticWeighting(WeightingStrategy):
    """`L = Σ_i w_i L_i` with fixed weights (`tasks.<t>.weight`, or resolved by `inverse_size`).

    Args:
        task_names: the tasks, in order.
        task_weights: w_i per task, in the same order.

    Example:
        >>> StaticWeighting(["a", "b"], [1.0, 0.5])
    """

    @classmethod
    def from_settings(cls, weighting, context):
        return cls(context.task_names, context.weights, name="weighting")

    def __init__(self, task_names: list[str], task_weights: list[float], **kwargs):
        super().__init__(task_names, **kwargs)
        task_weights = [float(w) for w in task_weights]
        if len(task_weights) != self.num_tasks or any(w < 0 for w in task_weights):
            raise ValueError(f"StaticWeighting: expected {self.num_tasks} weights >= 0, got {task_weights}")
        self.task_weights_list = task_weights

    def task_weights(self, task_losses, present, training):
        return keras.ops.convert_to_tensor(self.task_weights_list, dtype=task_losses.dtype)

    def get_config(self):
        return {**super().get_config(), "task_weights": self.task_weights_list}


def static_weights(configured: dict[str, float], label_counts: dict[str, int]) -> dict[str, float]:
    """`w_i = tasks.<i>.weight`, as written in the config."""
    if sum(configured.values()) <= 0:
        raise ConfigError(
            "tasks.*.weight", "every task weight is 0, so nothing would be trained", "give a task a weight > 0"
        )
    return {task: float(weight) for task, weight in configured.items()}


def inverse_size_weights(configured: dict[str, float], label_counts: dict[str, int]) -> dict[str, float]:
    """`w_i ∝ 1 / n_i` over labelled training examples, normalised so `Σ_i w_i = T`.

    Tasks with more labelled examples get smaller weights, so that a task
    labelled on few rows is not drowned out. Configured weights are ignored.
    """
    empty = [task for task, count in label_counts.items() if count <= 0]
    if empty:
        raise DataError(
            f"tasks.{empty[0]}.label",
            "no labelled training example, so inverse_size cannot weigh this task",
            "label some rows or use weighting.strategy: static",
        )
    inverse = {task: 1.0 / label_counts[task] for task in configured}
    total = sum(inverse.values())
    return {task: len(inverse) * value / total for task, value in inverse.items()}


# inverse_size trains with fixed weights too; only how they are chosen differs.
WEIGHTINGS.register("inverse_size")(StaticWeighting)


def resolve_task_weights(strategy: str, configured: dict[str, float], label_counts: dict[str, int]) -> dict[str, float]:
    """The base weights w_i a strategy starts from: inverse_size from label counts, else the configured ones."""
    if strategy == "inverse_size":
        return inverse_size_weights(configured, label_counts)
    return static_weights(configured, label_counts)
