"""Text encoders over token ids (0 = padding): Conv1D + max-pool, or a bag of words."""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from keras_mtmm.config.bounds import Widths, positive
from keras_mtmm.layers.encoders.layers import EncoderProjection, masked_mean
from keras_mtmm.registry import ENCODERS


@dataclass
class ConvTextEncoderConfig:
    """`encoder.conv1d`: the token embedding width, the conv layers' filters and kernel."""

    embedding_dim: int = 16
    filters: list[int] = field(default_factory=lambda: [16, 32])
    kernel_size: int = 3


@dataclass
class BagOfWordsConfig:
    """`encoder.bag`: the token embedding width."""

    embedding_dim: int = 16


EMBEDDING_DIM = positive("embedding_dim", "16")


@ENCODERS.register("conv1d")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class ConvTextEncoder(keras.layers.Layer):
    """Embedding -> Conv1D(relu, He-initialized) blocks -> global max pooling -> linear projection + LayerNorm.

    The output is an `EncoderProjection` (no ReLU on it: the old `Dense(relu)`
    output died on a one-keyword task in 3 of 3 seeds).

    Args:
        vocabulary_size: the number of token ids (the text vectorizer's vocabulary size).
        embedding_dim: the width of token embeddings.
        filters: the number of filters of each Conv1D layer.
        kernel_size: the Conv1D window, in tokens.
        units: the width of the output feature vector.
        dropout: dropout rate before the output projection.
        return_sequence: return one projected vector per token, `[B, L, units]`,
            instead of the pooled vector (for cross-attention fusion).

    Example:
        >>> encoder = ConvTextEncoder(vocabulary_size=100, embedding_dim=16, filters=[32], units=32)
    """

    modality_types = ("text",)

    reads_token_ids = True  # its input: token ids, 0 = padding (aligned with its sequence output)

    config_class = ConvTextEncoderConfig
    checks = (EMBEDDING_DIM, Widths("filters"), positive("kernel_size", "3"))

    @classmethod
    def from_settings(cls, encoder, vocabulary_sizes: list[int], return_sequence: bool, name: str):
        """The layer a modality's `encoder` block describes. (Keras' `from_config` is deserialization.)"""
        return cls(
            vocabulary_size=vocabulary_sizes[0],
            embedding_dim=encoder.get().embedding_dim,
            filters=encoder.get().filters,
            kernel_size=encoder.get().kernel_size,
            units=encoder.units,
            dropout=encoder.dropout,
            return_sequence=return_sequence,
            name=name,
        )

    def __init__(
        self,
        vocabulary_size: int,
        embedding_dim: int = 16,
        filters: list[int] = (32,),
        kernel_size: int = 3,
        units: int = 32,
        dropout: float = 0.0,
        return_sequence: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        filters = [int(f) for f in filters]
        if vocabulary_size < 2 or embedding_dim < 1 or units < 1 or not filters:
            raise ValueError(
                "ConvTextEncoder: vocabulary_size >= 2, embedding_dim >= 1, units >= 1 and non-empty filters "
                f"expected, got {vocabulary_size}, {embedding_dim}, {units}, {filters}"
            )
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.filters = filters
        self.kernel_size = kernel_size
        self.units = units
        self.dropout = dropout
        self.return_sequence = bool(return_sequence)
        self.embedding = keras.layers.Embedding(vocabulary_size, embedding_dim, name="embedding")
        self.convs = [
            keras.layers.Conv1D(
                f, kernel_size, padding="same", activation="relu", kernel_initializer="he_normal", name=f"conv_{i}"
            )
            for i, f in enumerate(filters)
        ]
        self.pool = keras.layers.GlobalMaxPooling1D()
        self.dropout_layer = keras.layers.Dropout(dropout)
        self.projection = EncoderProjection(units, name="projection")

    def build(self, input_shape):
        self.embedding.build(input_shape)
        shape = (*tuple(input_shape), self.embedding_dim)
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        self.projection.build((shape[0], shape[-1]))

    def call(self, token_ids, training=None):
        x = self.embedding(token_ids)
        for conv in self.convs:
            x = conv(x)
        if not self.return_sequence:
            x = self.pool(x)
        return self.projection(self.dropout_layer(x, training=training))

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.units) if self.return_sequence else (input_shape[0], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary_size": self.vocabulary_size,
            "embedding_dim": self.embedding_dim,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "units": self.units,
            "dropout": self.dropout,
            "return_sequence": self.return_sequence,
        }


@ENCODERS.register("bag")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class BagOfWordsTextEncoder(keras.layers.Layer):
    """Mean of token embeddings over non-padding tokens, then a linear projection + LayerNorm.

    Args:
        vocabulary_size: the number of token ids.
        embedding_dim: the width of token embeddings.
        units: the width of the output feature vector.
        dropout: dropout rate before the output projection.
        return_sequence: return the projected token embeddings, `[B, L, units]`,
            instead of their mean (for cross-attention fusion).
    """

    modality_types = ("text",)

    reads_token_ids = True

    config_class = BagOfWordsConfig
    checks = (EMBEDDING_DIM,)

    @classmethod
    def from_settings(cls, encoder, vocabulary_sizes: list[int], return_sequence: bool, name: str):
        """The layer a modality's `encoder` block describes. (Keras' `from_config` is deserialization.)"""
        return cls(
            vocabulary_size=vocabulary_sizes[0],
            embedding_dim=encoder.get().embedding_dim,
            units=encoder.units,
            dropout=encoder.dropout,
            return_sequence=return_sequence,
            name=name,
        )

    def __init__(
        self,
        vocabulary_size: int,
        embedding_dim: int = 16,
        units: int = 32,
        dropout: float = 0.0,
        return_sequence: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if vocabulary_size < 2 or embedding_dim < 1 or units < 1:
            raise ValueError(
                "BagOfWordsTextEncoder: vocabulary_size >= 2, embedding_dim >= 1 and units >= 1 expected, got "
                f"{vocabulary_size}, {embedding_dim}, {units}"
            )
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.dropout = dropout
        self.return_sequence = bool(return_sequence)
        self.embedding = keras.layers.Embedding(vocabulary_size, embedding_dim, name="embedding")
        self.dropout_layer = keras.layers.Dropout(dropout)
        self.projection = EncoderProjection(units, name="projection")

    def build(self, input_shape):
        self.embedding.build(input_shape)
        self.projection.build((input_shape[0], self.embedding_dim))

    def call(self, token_ids, training=None):
        embedded = self.embedding(token_ids)
        if self.return_sequence:
            return self.projection(self.dropout_layer(embedded, training=training))
        return self.projection(self.dropout_layer(masked_mean(embedded, token_ids), training=training))

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.units) if self.return_sequence else (input_shape[0], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary_size": self.vocabulary_size,
            "embedding_dim": self.embedding_dim,
            "units": self.units,
            "dropout": self.dropout,
            "return_sequence": self.return_sequence,
        }
