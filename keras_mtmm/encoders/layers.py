"""Small building blocks shared by the encoders, fusion and sharing layers."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="keras_mtmm")
class MLPBlock(keras.layers.Layer):
    """A stack of Dense(relu) layers, each followed by dropout.

    Args:
        units: the width of each Dense layer, in order (may be empty: identity).
        dropout: dropout rate after each layer.

    Example:
        >>> block = MLPBlock(units=[64, 32], dropout=0.1)
    """

    def __init__(self, units: list[int], dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        units = [int(u) for u in units]
        if any(u < 1 for u in units):
            raise ValueError(f"MLPBlock: units must be positive, got {units}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLPBlock: dropout must be in [0, 1), got {dropout}")
        self.units = units
        self.dropout = dropout
        self.dense_layers = [keras.layers.Dense(u, activation="relu", name=f"dense_{i}") for i, u in enumerate(units)]
        self.dropout_layer = keras.layers.Dropout(dropout) if dropout > 0 else None

    def build(self, input_shape):
        shape = tuple(input_shape)
        for dense in self.dense_layers:
            dense.build(shape)
            shape = dense.compute_output_shape(shape)

    def call(self, inputs, training=None):
        x = inputs
        for dense in self.dense_layers:
            x = dense(x)
            if self.dropout_layer is not None:
                x = self.dropout_layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units[-1]) if self.units else tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "dropout": self.dropout}
