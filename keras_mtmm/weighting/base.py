"""The base of every weighting strategy: a Keras layer that turns task losses into the total loss.

A strategy is a layer so that its state (learned log-variances, loss
histories, random seeds) lives in the model's variables: it is saved in
`.keras` checkpoints and restored when a run resumes.

    total = strategy(task_losses, present, training)    # task_losses, present: [T]

`present[i]` is 1 when task i has at least one labelled example in the batch:
an absent task contributes nothing, not even a regularising term.

Loss-only strategies (`uses_gradients = False`) go through the model's
`compute_loss`. Gradient strategies also implement `combine_gradients`,
which the model's `train_step` calls with per-task gradients of the shared
parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np


@dataclass(frozen=True)
class WeightingContext:
    """What a strategy's factory may use besides its config block.

    task_names: the tasks, in loss-vector order; weights: the resolved base w_i (configured, or
    inverse_size's); task_types: task -> type; seed: the experiment seed (random strategies);
    num_parameters: the network's trainable parameter count (db_mtl's per-parameter state).
    """

    task_names: list
    weights: list
    task_types: dict
    seed: int = 0
    num_parameters: int = 0


class WeightingStrategy(keras.layers.Layer):
    """Combines a vector of task losses into `L = Σ_i w_i L_i` and records the w_i used.

    Args:
        task_names: the tasks, in the order of the loss vector.
    """

    config_class = None  # the dataclass of its own keys, `weighting.<strategy>` (keras_mtmm.config.one_of)
    checks: tuple = ()  # the checks of those keys (keras_mtmm.config.bounds)

    uses_gradients = False

    @classmethod
    def from_settings(cls, weighting, context: WeightingContext) -> WeightingStrategy:
        """The layer a `WeightingConfig` (`weighting`) names. (Keras' `from_config` is deserialization.)"""
        return cls(context.task_names, name="weighting")

    def __init__(self, task_names: list[str], **kwargs):
        super().__init__(**kwargs)
        task_names = list(task_names)
        if not task_names or len(set(task_names)) != len(task_names):
            raise ValueError(f"{type(self).__name__}: task_names must be non-empty and unique, got {task_names}")
        self.task_names = task_names
        self.num_tasks = len(task_names)

    def build(self, input_shape=None):
        # Every replica records the same weights (they come from global losses): keep the first's.
        self.weight_sum = self.add_weight(
            shape=(self.num_tasks,),
            initializer="zeros",
            trainable=False,
            name="weight_sum",
            aggregation="only_first_replica",
        )
        self.weight_count = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="weight_count", aggregation="only_first_replica"
        )

    def task_weights(self, task_losses, present, training):
        """The weights w_i for this step, shape [T]."""
        raise NotImplementedError

    def call(self, task_losses, present, training=False):
        weights = self.task_weights(task_losses, present, training)
        total = keras.ops.sum(weights * task_losses * present)
        if training:
            self.record(weights)
        return total

    def record(self, weights) -> None:
        """Add one step's weights to the running mean that reports read."""
        self.weight_sum.assign_add(keras.ops.cast(weights, self.weight_sum.dtype))
        self.weight_count.assign_add(keras.ops.ones((), self.weight_count.dtype))

    def mean_recorded_weights(self) -> dict[str, float]:
        """The mean weights since the last reset, per task (empty before the first step)."""
        count = float(keras.ops.convert_to_numpy(self.weight_count))
        if count == 0:
            return {}
        sums = np.asarray(keras.ops.convert_to_numpy(self.weight_sum))
        return {task: float(value / count) for task, value in zip(self.task_names, sums)}

    def reset_recorded_weights(self) -> None:
        self.weight_sum.assign(keras.ops.zeros_like(self.weight_sum))
        self.weight_count.assign(keras.ops.zeros_like(self.weight_count))

    def on_epoch_end(self, epoch: int, task_losses: dict[str, float]) -> None:
        """Epoch-level update (DWA); `task_losses` are the epoch's mean training losses."""

    def get_config(self):
        return {**super().get_config(), "task_names": self.task_names}
