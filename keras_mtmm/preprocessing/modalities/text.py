"""Text: `tf.string [B]` -> `TextVectorization` token ids `int64 [B, L]` (0 = padding, 1 = out of vocabulary).

The vocabulary is a text file (`vocabulary_<modality>.txt`), so exports carry it in `assets/`. With a
`hub` encoder (`raw_text`) the strings pass through unchanged, `tf.string [B]`: TF Hub text modules
tokenize for themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from keras_mtmm.config.bounds import Choice, positive
from keras_mtmm.preprocessing.modalities.base import ModalityType
from keras_mtmm.preprocessing.stats import text_vocabulary
from keras_mtmm.registry import MODALITY_TYPES
from keras_mtmm.tasks.masked_lm import MASK_TOKEN

# How the text is standardized before it is split on whitespace (`auto`: `lower_and_strip_punctuation`, or
# `lower` where a token task reads the modality, so that each whitespace word stays one token).
STANDARDIZE = ("auto", "lower_and_strip_punctuation", "lower", "strip_punctuation", "none")


@dataclass
class TextModalityConfig:
    """`modalities.<m>.text`: the vocabulary size, the token sequence length and the standardization."""

    max_tokens: int = 2000
    sequence_length: int = 16
    standardize: str = "auto"


def standardize_of(spec: dict) -> str | None:
    """TextVectorization's `standardize` for a modality spec (specs saved before the key: the default)."""
    value = spec.get("standardize", "auto")
    return {"auto": "lower_and_strip_punctuation", "none": None}.get(value, value)


@MODALITY_TYPES.register("text")
class TextModality(ModalityType):
    name = "text"
    config_class = TextModalityConfig
    checks = (positive("max_tokens", "2000"), positive("sequence_length", "16"), Choice("standardize", STANDARDIZE))
    default_encoder = "conv1d"
    single_column = True

    def adapt(self, name, spec, values, folder):
        if spec.get("raw_text", False):
            return None
        vocabulary = text_vocabulary(values, spec["max_tokens"], spec["sequence_length"], standardize_of(spec))
        if spec.get("mask_token", False):  # a masked language model's [mask], in place of the rarest token
            vocabulary = [token for token in vocabulary if token != MASK_TOKEN][: spec["max_tokens"] - 3] + [MASK_TOKEN]
        filename = f"vocabulary_{name}.txt"
        (folder / filename).write_text("".join(f"{token}\n" for token in vocabulary), encoding="utf-8")
        return filename

    def token_names(self, learnt, folder) -> list[str]:
        """The token of each id: padding "", the out-of-vocabulary `[UNK]`, then the vocabulary file's."""
        return ["", "[UNK]", *(folder / learnt).read_text(encoding="utf-8").splitlines()]

    def files(self, learnt):
        return [learnt]

    def layers(self, name, spec, learnt, folder, vocabularies):
        if spec.get("raw_text", False):
            return None
        layer = keras.layers.TextVectorization(
            max_tokens=spec["max_tokens"],
            output_sequence_length=spec["sequence_length"],
            standardize=standardize_of(spec),
            vocabulary=vocabularies[learnt] if learnt in vocabularies else str(folder / learnt),
            name=f"{name}_vectorizer",
        )
        layer(tf.constant([""]))
        return [layer]

    def transform(self, spec, layers, value):
        return value if spec.get("raw_text", False) else layers[0](value)

    def present(self, spec, value):
        return tf.strings.length(tf.strings.strip(value)) > 0

    def model_input(self, spec):
        return ((), "string") if spec.get("raw_text", False) else ((spec["sequence_length"],), "int64")

    def raw_input(self, name, spec):
        return tf.TensorSpec([None], tf.string, name=name)

    def vocabulary_sizes(self, spec, layers):
        return [] if spec.get("raw_text", False) else [int(layers[0].vocabulary_size())]
