"""The losses of the task types that Keras does not have."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="keras_mtmm")
class ScaledMeanSquaredError(keras.losses.Loss):
    """Mean squared error in units of `target_scale`: `mean(((y - ŷ) / scale)²)`.

    With `target_scale` = the training targets' std, a regression loss is on
    the same order as a cross-entropy whatever the label's units, so task
    weights mean what they say.

    Args:
        target_scale: the divisor (the regression targets' std).
    """

    def __init__(
        self,
        target_scale: float = 1.0,
        reduction: str = "mean_with_sample_weight",
        name: str = "scaled_mse",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if target_scale <= 0:
            raise ValueError(f"ScaledMeanSquaredError: target_scale must be > 0, got {target_scale}")
        self.target_scale = float(target_scale)

    def call(self, y_true, y_pred):
        y_true = keras.ops.cast(y_true, y_pred.dtype)
        return keras.ops.mean(keras.ops.square((y_pred - y_true) / self.target_scale), axis=-1)

    def get_config(self):
        return {**super().get_config(), "target_scale": self.target_scale}
