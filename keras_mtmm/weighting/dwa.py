"""Dynamic Weight Average (DWA).

Liu, Johns, Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from keras_mtmm.config.bounds import Bound
from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.weighting.base import WeightingStrategy


def dwa_weights(previous: np.ndarray, before_previous: np.ndarray, temperature: float) -> np.ndarray:
    """`w_i = T·softmax(r_i / τ)` with `r_i = L_i(t−1) / L_i(t−2)` (the paper's eq. 7)."""
    ratios = np.asarray(previous, dtype=np.float64) / np.maximum(np.asarray(before_previous, dtype=np.float64), 1e-12)
    logits = ratios / temperature
    exponentials = np.exp(logits - logits.max())
    return len(ratios) * exponentials / exponentials.sum()


@dataclass
class DWAConfig:
    """`weighting.dwa`: the strategy's hyperparameters."""

    temperature: float = 2.0


@WEIGHTINGS.register("dwa")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class DynamicWeightAverage(WeightingStrategy):
    """Epoch-level weights from how fast each task's loss fell: slower tasks get more weight.

    Weights are 1 for the first two epochs, then `w_i(t) = T·exp(r_i/τ) / Σ_j exp(r_j/τ)`
    with `r_i = L_i(t−1)/L_i(t−2)` from the epochs' mean training losses. The
    loss history is kept in (non-trainable) weights, so a resumed run goes on
    with it.

    Args:
        task_names: the tasks, in order.
        temperature: τ; larger is smoother (the paper uses 2).

    Example:
        >>> DynamicWeightAverage(["a", "b"], temperature=2.0)
    """

    config_class = DWAConfig
    checks = (Bound("temperature", "> 0", lambda t: t > 0, "2.0"),)

    @classmethod
    def from_settings(cls, weighting, context):
        options = weighting.get()
        return cls(context.task_names, temperature=options.temperature, name="weighting")

    def __init__(self, task_names: list[str], temperature: float = 2.0, **kwargs):
        super().__init__(task_names, **kwargs)
        if temperature <= 0:
            raise ValueError(f"DynamicWeightAverage: temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def build(self, input_shape=None):
        super().build(input_shape)
        self.current = self.add_weight(shape=(self.num_tasks,), initializer="ones", trainable=False, name="current")
        self.loss_history = self.add_weight(
            shape=(2, self.num_tasks), initializer="zeros", trainable=False, name="loss_history"
        )
        self.epochs_seen = self.add_weight(shape=(), initializer="zeros", trainable=False, name="epochs_seen")

    def task_weights(self, task_losses, present, training):
        return keras.ops.cast(self.current, task_losses.dtype)

    def on_epoch_end(self, epoch: int, task_losses: dict[str, float]) -> None:
        history = np.asarray(keras.ops.convert_to_numpy(self.loss_history))
        latest = np.array([task_losses[task] for task in self.task_names], dtype=np.float32)
        history = np.stack([history[1], latest])  # [L(t-2), L(t-1)] for the next epoch
        seen = float(keras.ops.convert_to_numpy(self.epochs_seen)) + 1
        self.loss_history.assign(history)
        self.epochs_seen.assign(seen)
        if seen >= 2:
            self.current.assign(dwa_weights(history[1], history[0], self.temperature).astype(np.float32))

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
