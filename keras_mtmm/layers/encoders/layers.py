"""Small building blocks shared by the encoders, fusion and sharing layers."""

from __future__ import annotations

import keras

from keras_mtmm.config.choices import ACTIVATIONS

# Hidden-layer activations a config may name. ReLU units can die (output 0 for every input,
# so no gradient); GELU and SiLU are smooth and never quite 0, so they cannot.


def check_activation(owner: str, activation: str) -> str:
    """An activation name of `ACTIVATIONS`; ValueError otherwise."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"{owner}: activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
    return activation


@keras.saving.register_keras_serializable(package="keras_mtmm")
class MLPBlock(keras.layers.Layer):
    """A stack of Dense layers (ReLU by default; He-initialized, as suits ReLU and GELU), each followed by dropout.

    Args:
        units: the width of each Dense layer, in order (may be empty: identity).
        dropout: dropout rate after each layer.
        activation: the Dense layers' activation (a Keras activation name).

    Example:
        >>> block = MLPBlock(units=[64, 32], dropout=0.1)
    """

    def __init__(self, units: list[int], dropout: float = 0.0, activation: str = "relu", **kwargs):
        super().__init__(**kwargs)
        units = [int(u) for u in units]
        if any(u < 1 for u in units):
            raise ValueError(f"MLPBlock: units must be positive, got {units}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLPBlock: dropout must be in [0, 1), got {dropout}")
        self.units = units
        self.dropout = dropout
        self.activation = check_activation("MLPBlock", activation)
        self.dense_layers = [
            keras.layers.Dense(u, activation=self.activation, kernel_initializer="he_uniform", name=f"dense_{i}")
            for i, u in enumerate(units)
        ]
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
        return {**super().get_config(), "units": self.units, "dropout": self.dropout, "activation": self.activation}


@keras.saving.register_keras_serializable(package="keras_mtmm")
class EncoderProjection(keras.layers.Layer):
    """An encoder's output: a *linear* `Dense(units)`, then (`normalize`) a `LayerNormalization`.

    No ReLU on the final projection: a ReLU output unit whose pre-activation
    goes negative on every example gets no gradient again and stays dead
    (the old encoders' `Dense(relu)` outputs kept 3–6 of 64 units alive on
    a keyword task). The normalization puts every modality's features on
    the same scale for fusion; it is skipped for a 1-unit output (which it
    would make constant).

    Args:
        units: the output width.
        normalize: add the `LayerNormalization`.
    """

    def __init__(self, units: int, normalize: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.normalize = bool(normalize)
        self.dense = keras.layers.Dense(self.units, name="dense")
        self.norm = keras.layers.LayerNormalization(name="norm") if self.normalize and self.units > 1 else None

    def build(self, input_shape):
        self.dense.build(input_shape)
        if self.norm is not None:
            self.norm.build((*input_shape[:-1], self.units))

    def call(self, inputs):
        x = self.dense(inputs)
        return self.norm(x) if self.norm is not None else x

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "normalize": self.normalize}


def masked_mean(sequence, token_ids):
    """The mean of `sequence` `[B, L, D]` over the positions whose token id is not 0 (padding): `[B, D]`."""
    present = keras.ops.expand_dims(keras.ops.cast(keras.ops.not_equal(token_ids, 0), sequence.dtype), -1)
    total = keras.ops.sum(sequence * present, axis=1)
    return total / keras.ops.maximum(keras.ops.sum(present, axis=1), 1.0)


@keras.saving.register_keras_serializable(package="keras_mtmm")
class MaskedMeanPool(keras.layers.Layer):
    """The mean of a token sequence `[B, L, D]` over its present tokens (token id > 0): `[B, D]`.

    A text modality that a token task reads keeps its encoder's per-token features; this pools them
    for fusion, as the encoder's own pooling would (0 for a text without tokens).
    """

    def call(self, sequence, token_ids):
        return masked_mean(sequence, token_ids)

    def compute_output_shape(self, sequence_shape, token_ids_shape=None):
        return (sequence_shape[0], sequence_shape[-1])
