"""Modality encoders: one file per family (image, text, tabular, TF Hub modules).

Each encoder is a registered, serializable Keras layer that maps one
preprocessed modality tensor to a feature vector of width `units`.
`build_encoder` unpacks a modality's config into explicit arguments.
"""

from __future__ import annotations

from keras_mtmm.layers.encoders.hub import HubEncoder
from keras_mtmm.layers.encoders.image import ConvImageEncoder
from keras_mtmm.layers.encoders.tabular import CategoricalEmbeddingEncoder, IdentityEncoder, NumericMLPEncoder
from keras_mtmm.layers.encoders.text import BagOfWordsTextEncoder, ConvTextEncoder

__all__ = [
    "BagOfWordsTextEncoder",
    "CategoricalEmbeddingEncoder",
    "ConvImageEncoder",
    "ConvTextEncoder",
    "HubEncoder",
    "IdentityEncoder",
    "NumericMLPEncoder",
    "build_encoder",
]


def build_encoder(name: str, modality, vocabulary_sizes: list[int], return_sequence: bool = False):
    """Build the encoder layer for one modality.

    Args:
        name: the modality name (the layer is named `<name>_encoder`).
        modality: its `ModalityConfig`.
        vocabulary_sizes: the preprocessor's vocabulary size per column
            (text: one entry; categorical: one per column; else empty).
        return_sequence: ask sequence-capable encoders (cnn, conv1d, bag) for
            their token/patch sequence instead of a pooled vector; the others
            give their vector whatever this says.
    """
    encoder = modality.encoder
    layer_name = f"{name}_encoder"
    if encoder.type == "cnn":
        return ConvImageEncoder(
            filters=encoder.filters,
            kernel_size=encoder.kernel_size,
            units=encoder.units,
            dropout=encoder.dropout,
            pooling=encoder.pooling,
            grid=encoder.grid,
            return_sequence=return_sequence,
            name=layer_name,
        )
    if encoder.type == "conv1d":
        return ConvTextEncoder(
            vocabulary_size=vocabulary_sizes[0],
            embedding_dim=encoder.embedding_dim,
            filters=encoder.filters,
            kernel_size=encoder.kernel_size,
            units=encoder.units,
            dropout=encoder.dropout,
            return_sequence=return_sequence,
            name=layer_name,
        )
    if encoder.type == "bag":
        return BagOfWordsTextEncoder(
            vocabulary_size=vocabulary_sizes[0],
            embedding_dim=encoder.embedding_dim,
            units=encoder.units,
            dropout=encoder.dropout,
            return_sequence=return_sequence,
            name=layer_name,
        )
    if encoder.type == "mlp":
        return NumericMLPEncoder(
            hidden_units=encoder.hidden_units, units=encoder.units, dropout=encoder.dropout, name=layer_name
        )
    if encoder.type == "identity":
        return IdentityEncoder(name=layer_name)
    if encoder.type == "embedding":
        return CategoricalEmbeddingEncoder(
            vocabulary_sizes=vocabulary_sizes,
            embedding_dim=encoder.embedding_dim,
            hidden_units=encoder.hidden_units,
            units=encoder.units,
            dropout=encoder.dropout,
            name=layer_name,
        )
    if encoder.type == "hub":
        return HubEncoder(
            handle=encoder.handle,
            units=encoder.units,
            fine_tune=encoder.trainable,
            signature=encoder.signature,
            output_key=encoder.output_key,
            dropout=encoder.dropout,
            name=layer_name,
        )
    raise ValueError(f"no builder for encoder type {encoder.type!r}")
