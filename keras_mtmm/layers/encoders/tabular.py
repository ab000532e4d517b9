"""Tabular encoders: an MLP over normalized numerics, embeddings for categoricals."""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from keras_mtmm.config.bounds import Choice, Widths, positive
from keras_mtmm.layers.encoders.layers import EncoderProjection, MLPBlock
from keras_mtmm.registry import ENCODERS


@dataclass
class NumericMLPConfig:
    """`encoder.mlp`: the hidden layers' widths."""

    hidden_units: list[int] = field(default_factory=list)


@dataclass
class CategoricalEmbeddingConfig:
    """`encoder.embedding`: each column's embedding width, the hidden layers' widths, and how a
    multi-valued column's values are pooled (`mean` or `sum` of their embeddings, padding left out)."""

    embedding_dim: int = 16
    hidden_units: list[int] = field(default_factory=list)
    pooling: str = "mean"


@ENCODERS.register("mlp")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class NumericMLPEncoder(keras.layers.Layer):
    """An MLP over normalized numeric columns (missing values arrive as 0 = the mean).

    Args:
        hidden_units: widths of the hidden Dense(relu) layers.
        units: the width of the output feature vector.
        dropout: dropout rate after each hidden layer.

    Example:
        >>> encoder = NumericMLPEncoder(hidden_units=[32], units=16)
    """

    modality_types = ("numeric",)

    config_class = NumericMLPConfig
    checks = (Widths("hidden_units"),)

    @classmethod
    def from_settings(cls, encoder, vocabulary_sizes: list[int], return_sequence: bool, name: str):
        """The layer a modality's `encoder` block describes. (Keras' `from_config` is deserialization.)"""
        return cls(hidden_units=encoder.get().hidden_units, units=encoder.units, dropout=encoder.dropout, name=name)

    def __init__(self, hidden_units: list[int] = (), units: int = 32, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if units < 1:
            raise ValueError(f"NumericMLPEncoder: units must be positive, got {units}")
        self.hidden_units = [int(u) for u in hidden_units]
        self.units = units
        self.dropout = dropout
        self.hidden = MLPBlock(self.hidden_units, dropout, name="hidden")
        # Linear, not normalized: a LayerNorm over a projection of a few columns would squash their magnitudes.
        self.projection = EncoderProjection(units, normalize=False, name="projection")

    def build(self, input_shape):
        self.hidden.build(input_shape)
        self.projection.build(self.hidden.compute_output_shape(input_shape))

    def call(self, values, training=None):
        return self.projection(self.hidden(values, training=training))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units, "units": self.units, "dropout": self.dropout}


@ENCODERS.register("embedding")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class CategoricalEmbeddingEncoder(keras.layers.Layer):
    """One embedding table per categorical column, concatenated, then an MLP.

    Index 0 is "missing", 1 the out-of-vocabulary bucket (the preprocessor's
    `StringLookup` convention; with hashing, the buckets start at 1). A
    multi-valued column (`[batch, columns, values]` indices, 0 = padding)
    is the mean or the sum of its values' embeddings (`pooling`); a row
    without values gets zeros.

    Args:
        vocabulary_sizes: the number of indices of each column, in column order.
        embedding_dim: the width of each column's embedding.
        hidden_units: widths of hidden Dense(relu) layers after the concatenation.
        units: the width of the output feature vector.
        dropout: dropout rate after each hidden layer.
    """

    modality_types = ("categorical",)

    config_class = CategoricalEmbeddingConfig
    checks = (positive("embedding_dim", "16"), Widths("hidden_units"), Choice("pooling", ("mean", "sum")))

    @classmethod
    def from_settings(cls, encoder, vocabulary_sizes: list[int], return_sequence: bool, name: str):
        """The layer a modality's `encoder` block describes. (Keras' `from_config` is deserialization.)"""
        return cls(
            vocabulary_sizes=vocabulary_sizes,
            embedding_dim=encoder.get().embedding_dim,
            hidden_units=encoder.get().hidden_units,
            pooling=encoder.get().pooling,
            units=encoder.units,
            dropout=encoder.dropout,
            name=name,
        )

    def __init__(
        self,
        vocabulary_sizes: list[int],
        embedding_dim: int = 8,
        hidden_units: list[int] = (),
        units: int = 32,
        dropout: float = 0.0,
        pooling: str = "mean",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if pooling not in ("mean", "sum"):
            raise ValueError(f"CategoricalEmbeddingEncoder: pooling must be mean or sum, got {pooling!r}")
        self.pooling = pooling
        vocabulary_sizes = [int(v) for v in vocabulary_sizes]
        if not vocabulary_sizes or any(v < 2 for v in vocabulary_sizes):
            raise ValueError(f"CategoricalEmbeddingEncoder: vocabulary_sizes must be >= 2 each, got {vocabulary_sizes}")
        self.vocabulary_sizes = vocabulary_sizes
        self.embedding_dim = embedding_dim
        self.hidden_units = [int(u) for u in hidden_units]
        self.units = units
        self.dropout = dropout
        self.embeddings = [
            keras.layers.Embedding(size, embedding_dim, name=f"embedding_{i}")
            for i, size in enumerate(vocabulary_sizes)
        ]
        self.hidden = MLPBlock(self.hidden_units, dropout, name="hidden")
        # Linear, not normalized: a LayerNorm over a projection of a few columns would squash their magnitudes.
        self.projection = EncoderProjection(units, normalize=False, name="projection")

    def build(self, input_shape):
        for embedding in self.embeddings:
            embedding.build((input_shape[0],))
        width = (input_shape[0], self.embedding_dim * len(self.embeddings))
        self.hidden.build(width)
        self.projection.build(self.hidden.compute_output_shape(width))

    def _column(self, index: int, indices):
        ids = indices[:, index]
        vectors = self.embeddings[index](ids)
        if len(ids.shape) == 1:
            return vectors
        mask = keras.ops.cast(keras.ops.expand_dims(ids > 0, -1), vectors.dtype)  # [B, values, 1]
        total = keras.ops.sum(vectors * mask, axis=1)
        if self.pooling == "sum":
            return total
        return total / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)

    def call(self, indices, training=None):
        columns = [self._column(i, indices) for i in range(len(self.embeddings))]
        x = keras.ops.concatenate(columns, axis=-1)
        return self.projection(self.hidden(x, training=training))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary_sizes": self.vocabulary_sizes,
            "embedding_dim": self.embedding_dim,
            "hidden_units": self.hidden_units,
            "units": self.units,
            "dropout": self.dropout,
            "pooling": self.pooling,
        }


@ENCODERS.register("identity")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class IdentityEncoder(keras.layers.Layer):
    """Passes normalized numeric columns through unchanged (the features go straight to fusion/sharing).

    For tabular benchmarks such as MMoE's synthetic data, where the experts
    themselves should see the raw features.
    """

    modality_types = ("numeric",)

    @classmethod
    def from_settings(cls, encoder, vocabulary_sizes: list[int], return_sequence: bool, name: str):
        """The layer a modality's `encoder` block describes. (Keras' `from_config` is deserialization.)"""
        return cls(name=name)

    def call(self, values):
        return values

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)
