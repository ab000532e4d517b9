"""Modality encoders: one file per family (image, text, Transformer text, tabular, TF Hub modules).

Each encoder is a registered, serializable Keras layer that maps one
preprocessed modality tensor to a feature vector of width `units`.
`build_encoder` looks the encoder type up in `ENCODERS`; each class builds itself (`from_settings`).
"""

from __future__ import annotations

from keras_mtmm.layers.encoders.hub import HubEncoder
from keras_mtmm.layers.encoders.image import ConvImageEncoder
from keras_mtmm.layers.encoders.tabular import CategoricalEmbeddingEncoder, IdentityEncoder, NumericMLPEncoder
from keras_mtmm.layers.encoders.text import BagOfWordsTextEncoder, ConvTextEncoder
from keras_mtmm.layers.encoders.transformer import TransformerTextEncoder
from keras_mtmm.registry import ENCODERS

__all__ = [
    "BagOfWordsTextEncoder",
    "CategoricalEmbeddingEncoder",
    "ConvImageEncoder",
    "ConvTextEncoder",
    "HubEncoder",
    "IdentityEncoder",
    "NumericMLPEncoder",
    "TransformerTextEncoder",
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
    layer_class = ENCODERS.get(encoder.type, "encoder.type")
    return layer_class.from_settings(encoder, vocabulary_sizes, return_sequence, f"{name}_encoder")
