"""Numeric columns: `float32 [B, k]` -> `Normalization` with the training mean and variance (NaN-aware).

A missing value (NaN) becomes 0, the mean. A value that is not finite (±inf) reads as missing too
when serving; in training data it is an error (`DataError`), as it would train a NaN model.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_mtmm.data.tables import numeric_values
from keras_mtmm.preprocessing.modalities.base import ModalityType
from keras_mtmm.preprocessing.stats import check_finite_training_values, numeric_statistics
from keras_mtmm.registry import MODALITY_TYPES


@MODALITY_TYPES.register("numeric")
class NumericModality(ModalityType):
    name = "numeric"
    default_encoder = "mlp"
    cells = "number"

    def adapt(self, name, spec, values, folder):
        check_finite_training_values(values, spec["columns"])
        return numeric_statistics(values)

    def layers(self, name, spec, learnt, folder, vocabularies):
        layer = keras.layers.Normalization(mean=learnt["mean"], variance=learnt["variance"], name=f"{name}_normalizer")
        layer.build((None, len(learnt["mean"])))
        return [layer]

    def transform(self, spec, layers, value):
        value = tf.cast(value, tf.float32)
        normalized = layers[0](value)
        return tf.where(tf.math.is_finite(value), normalized, tf.zeros_like(normalized))

    def present(self, spec, value):
        return tf.reduce_any(tf.math.is_finite(tf.cast(value, tf.float32)), axis=1)

    def model_input(self, spec):
        return (len(spec["columns"]),), "float32"

    def raw_input(self, name, spec):
        return tf.TensorSpec([None, len(spec["columns"])], tf.float32, name=name)

    def table_input(self, table, columns):
        return np.stack([numeric_values(table[c], c, table) for c in columns], axis=1).astype(np.float32)

    def raw_from_columns(self, spec, columns):
        return tf.stack([tf.cast(columns[c], tf.float32) for c in spec["columns"]], axis=1)

    def missing(self, values):
        return np.full(values.shape, np.nan, dtype=np.float32)
