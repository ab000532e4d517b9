"""A small Transformer text encoder: token + learned position embeddings, pre-LN self-attention blocks.

Vaswani et al., "Attention Is All You Need", NeurIPS 2017, with the pre-layer-norm blocks of
Xiong et al., "On Layer Normalization in the Transformer Architecture", ICML 2020 (they train
without a learning-rate warm-up). Padding (token id 0) is never attended to, and the pooled vector
is the mean over the tokens that are there.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from keras_mtmm.config.bounds import positive
from keras_mtmm.errors import ConfigError
from keras_mtmm.layers.encoders.layers import EncoderProjection, masked_mean
from keras_mtmm.registry import ENCODERS


@dataclass
class TransformerTextEncoderConfig:
    """`encoder.transformer`: the model width, the blocks, their heads and feed-forward width."""

    embedding_dim: int = 32
    num_layers: int = 2
    num_heads: int = 2
    ff_units: int = 64


@keras.saving.register_keras_serializable(package="keras_mtmm")
class TransformerBlock(keras.layers.Layer):
    """x + MHA(LN(x)) with a key padding mask, then x + FFN(LN(x)) (GELU), each with dropout."""

    def __init__(self, width: int, num_heads: int, ff_units: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.width, self.num_heads, self.ff_units, self.dropout = int(width), int(num_heads), int(ff_units), dropout
        self.attention_norm = keras.layers.LayerNormalization(name="attention_norm")
        self.attention = keras.layers.MultiHeadAttention(
            num_heads, self.width // self.num_heads, dropout=dropout, name="attention"
        )
        self.ff_norm = keras.layers.LayerNormalization(name="ff_norm")
        self.ff_in = keras.layers.Dense(self.ff_units, activation="gelu", name="ff_in")
        self.ff_out = keras.layers.Dense(self.width, name="ff_out")
        self.drop = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.ff_norm.build(input_shape)
        self.ff_in.build(input_shape)
        self.ff_out.build((*input_shape[:-1], self.ff_units))

    def call(self, x, token_mask, training=None):
        keys = keras.ops.expand_dims(token_mask, 1)  # [B, 1, L]: every query may look at the present tokens
        h = self.attention_norm(x)
        x = x + self.drop(self.attention(h, h, attention_mask=keys, training=training), training=training)
        h = self.ff_out(self.ff_in(self.ff_norm(x)))
        return x + self.drop(h, training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "width": self.width,
            "num_heads": self.num_heads,
            "ff_units": self.ff_units,
            "dropout": self.dropout,
        }


@ENCODERS.register("transformer")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class TransformerTextEncoder(keras.layers.Layer):
    """Token ids `[B, L]` (0 = padding) -> a pooled vector `[B, units]`, or one vector per token `[B, L, units]`.

    Args:
        vocabulary_size: the number of token ids.
        embedding_dim: the model width d (token and position embeddings, every block).
        num_layers: the Transformer blocks.
        num_heads: the attention heads of each block (d must divide by it).
        ff_units: the width of each block's feed-forward layer.
        units: the width of the output features.
        dropout: dropout in the blocks and before the output projection.
        return_sequence: return one projected vector per token (for cross-attention fusion and
            token-level tasks) instead of the masked mean.

    Example:
        >>> encoder = TransformerTextEncoder(vocabulary_size=100, embedding_dim=16, num_heads=2, units=8)
        >>> tuple(encoder(keras.ops.ones((2, 5), dtype="int64")).shape)
        (2, 8)
    """

    modality_types = ("text",)
    reads_token_ids = True  # its input: token ids, 0 = padding (aligned with its sequence output)

    config_class = TransformerTextEncoderConfig
    checks = (
        positive("embedding_dim", "32"),
        positive("num_layers", "2"),
        positive("num_heads", "2"),
        positive("ff_units", "64"),
    )

    @classmethod
    def check_config(cls, options, encoder, context, where: str) -> None:
        if options.embedding_dim % options.num_heads:
            raise ConfigError(
                f"{where}.num_heads",
                f"the width {options.embedding_dim} does not divide into {options.num_heads} heads",
                "make embedding_dim a multiple of num_heads",
            )

    @classmethod
    def from_settings(cls, encoder, vocabulary_sizes: list[int], return_sequence: bool, name: str):
        """The layer a modality's `encoder` block describes. (Keras' `from_config` is deserialization.)"""
        options = encoder.get()
        return cls(
            vocabulary_size=vocabulary_sizes[0],
            embedding_dim=options.embedding_dim,
            num_layers=options.num_layers,
            num_heads=options.num_heads,
            ff_units=options.ff_units,
            units=encoder.units,
            dropout=encoder.dropout,
            return_sequence=return_sequence,
            name=name,
        )

    def __init__(
        self,
        vocabulary_size: int,
        embedding_dim: int = 32,
        num_layers: int = 2,
        num_heads: int = 2,
        ff_units: int = 64,
        units: int = 32,
        dropout: float = 0.0,
        return_sequence: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if vocabulary_size < 2 or embedding_dim < 1 or num_layers < 1 or embedding_dim % num_heads:
            raise ValueError(
                "TransformerTextEncoder: vocabulary_size >= 2, num_layers >= 1 and an embedding_dim that num_heads "
                f"divides expected, got {vocabulary_size}, {num_layers}, {embedding_dim}, {num_heads}"
            )
        self.vocabulary_size, self.embedding_dim = int(vocabulary_size), int(embedding_dim)
        self.num_layers, self.num_heads, self.ff_units = int(num_layers), int(num_heads), int(ff_units)
        self.units, self.dropout, self.return_sequence = int(units), dropout, bool(return_sequence)
        self.embedding = keras.layers.Embedding(self.vocabulary_size, self.embedding_dim, name="embedding")
        self.blocks = [
            TransformerBlock(self.embedding_dim, self.num_heads, self.ff_units, dropout, name=f"block_{i}")
            for i in range(self.num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(name="final_norm")
        self.dropout_layer = keras.layers.Dropout(dropout)
        self.projection = EncoderProjection(self.units, name="projection")

    def build(self, input_shape):
        length = input_shape[1]
        if length is None:
            raise ValueError("TransformerTextEncoder: the sequence length must be known (it sizes the positions)")
        self.embedding.build(input_shape)
        self.positions = self.add_weight(
            shape=(int(length), self.embedding_dim),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="positions",
        )
        shape = (input_shape[0], int(length), self.embedding_dim)
        for block in self.blocks:
            block.build(shape)
        self.final_norm.build(shape)
        self.projection.build((input_shape[0], self.embedding_dim) if not self.return_sequence else shape)

    def call(self, token_ids, training=None):
        mask = token_ids > 0
        x = self.embedding(token_ids) + keras.ops.expand_dims(self.positions, 0)
        for block in self.blocks:
            x = block(x, mask, training=training)
        x = self.final_norm(x)
        if not self.return_sequence:
            x = masked_mean(x, token_ids)
        return self.projection(self.dropout_layer(x, training=training))

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.units) if self.return_sequence else (input_shape[0], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary_size": self.vocabulary_size,
            "embedding_dim": self.embedding_dim,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "ff_units": self.ff_units,
            "units": self.units,
            "dropout": self.dropout,
            "return_sequence": self.return_sequence,
        }
