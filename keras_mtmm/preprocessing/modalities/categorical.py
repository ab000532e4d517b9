"""Categorical columns: `tf.string [B, k]` -> one `StringLookup` per column, `int64 [B, k]`.

0 = missing (""), 1 = out of vocabulary, then the vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from keras_mtmm.cells import as_strings
from keras_mtmm.config.bounds import positive
from keras_mtmm.preprocessing.modalities.base import ModalityType
from keras_mtmm.preprocessing.stats import category_vocabulary
from keras_mtmm.registry import MODALITY_TYPES


@dataclass
class CategoricalModalityConfig:
    """`modalities.<m>.categorical`: the most frequent categories kept per column."""

    max_tokens: int = 2000


@MODALITY_TYPES.register("categorical")
class CategoricalModality(ModalityType):
    name = "categorical"
    config_class = CategoricalModalityConfig
    checks = (positive("max_tokens", "2000"),)
    default_encoder = "embedding"

    def adapt(self, name, spec, values, folder):
        return [category_vocabulary(values[:, i], spec["max_tokens"]) for i in range(values.shape[1])]

    def layers(self, name, spec, learnt, folder, vocabularies):
        lookups = [
            keras.layers.StringLookup(
                vocabulary=vocabulary, num_oov_indices=1, mask_token="", name=f"{name}_lookup_{i}"
            )
            for i, vocabulary in enumerate(learnt)
        ]
        for lookup in lookups:
            lookup(tf.constant([""]))
        return lookups

    def transform(self, spec, layers, value):
        value = tf.strings.strip(value)
        return tf.stack([lookup(value[:, i]) for i, lookup in enumerate(layers)], axis=1)

    def present(self, spec, value):
        return tf.reduce_any(tf.strings.length(tf.strings.strip(value)) > 0, axis=1)

    def model_input(self, spec):
        return (len(spec["columns"]),), "int64"

    def raw_input(self, name, spec):
        return tf.TensorSpec([None, len(spec["columns"])], tf.string, name=name)

    def table_input(self, table, columns):
        return np.stack([as_strings(table[c]) for c in columns], axis=1)

    def raw_from_columns(self, spec, columns):
        return tf.stack([tf.strings.strip(columns[c]) for c in spec["columns"]], axis=1)

    def vocabulary_sizes(self, spec, layers):
        return [int(lookup.vocabulary_size()) for lookup in layers]
