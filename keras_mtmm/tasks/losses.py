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


@keras.saving.register_keras_serializable(package="keras_mtmm")
class MaskedTokenCrossentropy(keras.losses.Loss):
    """Cross-entropy at the positions a token head predicted, averaged over them.

    The head (`keras_mtmm.layers.heads.TokenHead`) gives all-zero probabilities where it was not
    asked to predict (unmasked or padded tokens of a masked language model); the loss counts the
    other positions, weighted by the sample weight (the label mask): `Σ w·CE / Σ w` over them,
    0 when a batch has none.
    """

    def __init__(self, name: str = "masked_token_crossentropy", dtype=None):
        super().__init__(name=name, reduction="mean_with_sample_weight", dtype=dtype)

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_pred = keras.ops.cast(y_pred, "float32")
        asked = keras.ops.sum(y_pred, axis=-1, keepdims=True) > 0
        uniform = keras.ops.ones_like(y_pred) / keras.ops.cast(keras.ops.shape(y_pred)[-1], "float32")
        probabilities = keras.ops.where(asked, y_pred, uniform)  # (no 0/0 where nothing was asked)
        losses = keras.losses.sparse_categorical_crossentropy(y_true, probabilities)
        weights = self.weights_of(y_pred, sample_weight)
        return keras.ops.sum(losses * weights) / keras.ops.maximum(keras.ops.sum(weights), 1e-12)

    def weights_of(self, y_pred, sample_weight=None):
        """The weight of each position: its sample weight where the head predicted, else 0.

        Their sum is the count the loss is a mean over (what weighs a replica's loss in the global one).
        """
        weights = keras.ops.cast(keras.ops.sum(keras.ops.cast(y_pred, "float32"), axis=-1) > 0, "float32")
        return weights if sample_weight is None else weights * keras.ops.cast(sample_weight, "float32")

    def call(self, y_true, y_pred):  # (Keras' reduction path, unused: `__call__` weighs the asked positions)
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}
