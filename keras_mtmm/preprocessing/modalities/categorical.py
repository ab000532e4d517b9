"""Categorical columns: `tf.string [B, k]` -> category indices per column, `int64 [B, k]` (or `[B, k, L]`).

Index 0 = missing (""). With a vocabulary (the default), one `StringLookup` per column learnt at
adapt time from the `max_tokens` most frequent categories: 1 = out of vocabulary, then the
vocabulary. With `hash_buckets: N`, a `Hashing` layer (no vocabulary, nothing learnt, for id
spaces too big to count): 1 + the category's bucket in [0, N). With `multi_valued: true`, a cell
is a `separator`-joined list (a user's recent item ids, a product's tags): each of the first
`max_values` values is indexed the same way, 0 padding the rest, `[B, k, max_values]`; the
embedding encoder pools them.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from keras_mtmm.cells import as_strings
from keras_mtmm.config.bounds import Bound, positive
from keras_mtmm.preprocessing.modalities.base import ModalityType
from keras_mtmm.preprocessing.stats import category_vocabulary
from keras_mtmm.registry import MODALITY_TYPES


@dataclass
class CategoricalModalityConfig:
    """`modalities.<m>.categorical`: a vocabulary of the `max_tokens` most frequent categories per column, or
    `hash_buckets` (> 0) hashed buckets; `multi_valued` cells of up to `max_values` values joined by `separator`."""

    max_tokens: int = 2000
    hash_buckets: int = 0
    multi_valued: bool = False
    separator: str = "|"
    max_values: int = 16


@MODALITY_TYPES.register("categorical")
class CategoricalModality(ModalityType):
    name = "categorical"
    config_class = CategoricalModalityConfig
    checks = (
        positive("max_tokens", "2000"),
        # (an embedding row per bucket: 2^24 rows of 16 floats are already 1 GiB)
        Bound("hash_buckets", "0 (a vocabulary) to 16777216", lambda buckets: 0 <= buckets <= 2**24, "1048576"),
        positive("max_values", "16"),
        Bound("separator", "a non-empty string", lambda separator: len(separator) > 0, "'|'"),
    )
    default_encoder = "embedding"

    def adapt(self, name, spec, values, folder):
        if spec.get("hash_buckets", 0):
            return None  # nothing to learn: no pass over the categories
        columns = [values[:, i] for i in range(values.shape[1])]
        if spec.get("multi_valued", False):
            columns = [_values_of(column, spec) for column in columns]
        return [category_vocabulary(column, spec["max_tokens"]) for column in columns]

    def layers(self, name, spec, learnt, folder, vocabularies):
        if spec.get("hash_buckets", 0):
            return [
                keras.layers.Hashing(num_bins=spec["hash_buckets"], name=f"{name}_hashing_{i}")
                for i in range(len(spec["columns"]))
            ]
        lookups = [
            keras.layers.StringLookup(
                vocabulary=vocabulary, num_oov_indices=1, mask_token="", name=f"{name}_lookup_{i}"
            )
            for i, vocabulary in enumerate(learnt)
        ]
        for lookup in lookups:
            lookup(tf.constant([""]))
        return lookups

    def _index(self, spec, layer, value):
        """Category strings (any shape) -> indices, 0 for ""."""
        if spec.get("hash_buckets", 0):
            return tf.where(value == "", tf.zeros_like(value, tf.int64), layer(value) + 1)
        return layer(value)

    def transform(self, spec, layers, value):
        value = tf.strings.strip(value)
        if not spec.get("multi_valued", False):
            return tf.stack([self._index(spec, layer, value[:, i]) for i, layer in enumerate(layers)], axis=1)
        columns = []
        for i, layer in enumerate(layers):
            parts = tf.strings.strip(tf.strings.split(value[:, i], spec["separator"]))
            ids = tf.ragged.map_flat_values(lambda part, layer=layer: self._index(spec, layer, part), parts)
            columns.append(ids.to_tensor(0, shape=[None, spec["max_values"]]))
        return tf.stack(columns, axis=1)

    def present(self, spec, value):
        return tf.reduce_any(tf.strings.length(tf.strings.strip(value)) > 0, axis=1)

    def model_input(self, spec):
        if spec.get("multi_valued", False):
            return (len(spec["columns"]), spec["max_values"]), "int64"
        return (len(spec["columns"]),), "int64"

    def raw_input(self, name, spec):
        return tf.TensorSpec([None, len(spec["columns"])], tf.string, name=name)

    def table_input(self, table, columns):
        return np.stack([as_strings(table[c]) for c in columns], axis=1)

    def raw_from_columns(self, spec, columns):
        return tf.stack([tf.strings.strip(columns[c]) for c in spec["columns"]], axis=1)

    def vocabulary_sizes(self, spec, layers):
        if spec.get("hash_buckets", 0):
            return [int(spec["hash_buckets"]) + 1] * len(layers)
        return [int(lookup.vocabulary_size()) for lookup in layers]


def _values_of(cells: np.ndarray, spec: dict) -> np.ndarray:
    """The values of multi-valued cells, one after another (as `category_vocabulary` counts them)."""
    separator = spec["separator"]
    values = [part.strip() for cell in as_strings(cells) for part in cell.split(separator)[: spec["max_values"]]]
    return np.asarray([value for value in values if value], dtype=object)
