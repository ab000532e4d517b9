"""Fixed task weights: from the config (`static`) or from label counts (`inverse_size`)."""

from __future__ import annotations

from keras_mtmm.errors import ConfigError, DataError
from keras_mtmm.registries import WEIGHTINGS


@WEIGHTINGS.register("static")
class StaticWeighting:
    """`w_i = tasks.<i>.weight`, as written in the config."""

    def resolve(self, configured: dict[str, float], label_counts: dict[str, int]) -> dict[str, float]:
        """Return the weights to train with.

        Args:
            configured: `tasks.<t>.weight` per task.
            label_counts: labelled training examples per task.
        """
        if sum(configured.values()) <= 0:
            raise ConfigError(
                "tasks.*.weight", "every task weight is 0, so nothing would be trained", "give a task a weight > 0"
            )
        return {task: float(weight) for task, weight in configured.items()}


@WEIGHTINGS.register("inverse_size")
class InverseSizeWeighting:
    """`w_i ∝ 1 / n_i` over labelled training examples, normalised so `Σ_i w_i = T`.

    Tasks with more labelled examples get smaller weights, so that a task
    labelled on few rows is not drowned out. Configured weights are ignored.
    """

    def resolve(self, configured: dict[str, float], label_counts: dict[str, int]) -> dict[str, float]:
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


def resolve_task_weights(strategy: str, configured: dict[str, float], label_counts: dict[str, int]) -> dict[str, float]:
    """The weights w_i that `strategy` gives, from configured weights and label counts."""
    return WEIGHTINGS.get(strategy)().resolve(configured, label_counts)
