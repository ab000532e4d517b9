"""Multilabel tasks: any subset of C labels, a sigmoid per label."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_mtmm.cells import as_strings
from keras_mtmm.registry import TASK_TYPES
from keras_mtmm.tasks.base import REDUCTION, TaskType
from keras_mtmm.tasks.binary import BinaryTask
from keras_mtmm.tasks.scores import f1, mean_defined, roc_auc


@TASK_TYPES.register("multilabel")
class MultilabelTask(TaskType):
    """Any subset of C labels; raw labels are joined by `data.label_separator`."""

    name = "multilabel"
    activation = "sigmoid"
    metric_names = ("f1_micro", "f1_macro", "auc")
    default_metrics = ("f1_micro", "f1_macro", "auc")

    def loss(self, target_scale=1.0):
        return keras.losses.BinaryCrossentropy(reduction=REDUCTION)

    def keras_metrics(self, metrics, num_classes, top_k):
        table = {
            "f1_micro": lambda: keras.metrics.F1Score(average="micro", threshold=0.5, name="f1_micro"),
            "f1_macro": lambda: keras.metrics.F1Score(average="macro", threshold=0.5, name="f1_macro"),
            "auc": lambda: keras.metrics.AUC(multi_label=True, num_labels=num_classes, name="auc"),
        }
        return [table[m]() for m in metrics]

    def infer_classes(self, raw, separator):
        names = set()
        for value in as_strings(raw):
            names.update(part.strip() for part in value.split(separator) if part.strip())
        return sorted(names)

    def unknown_label(self, cell, classes, separator):
        return next(part for part in (p.strip() for p in cell.split(separator)) if part not in classes)

    def encode_tf(self, raw, classes, table, separator):
        text = tf.strings.strip(raw)
        present = tf.strings.length(text) > 0
        parts = tf.strings.strip(tf.strings.split(text, separator))
        ids = tf.ragged.map_flat_values(table.lookup, parts)
        unknown = tf.logical_and(tf.reduce_any(ids < 0, axis=1), present)  # ("a||b": its empty label too)
        hot = tf.ragged.map_flat_values(lambda i: tf.one_hot(tf.maximum(i, 0), len(classes)), ids)
        target = tf.reduce_max(hot, axis=1)  # [B, C]; rows without labels are masked below
        return tf.where(present[:, None], target, tf.zeros_like(target)), tf.cast(present, tf.float32), unknown

    def example_losses(self, predictions, targets, target_scale=1.0):
        return BinaryTask.example_losses(self, predictions, targets)

    def score(self, predictions, targets, metrics, top_k):
        predicted = predictions > 0.5
        truth = targets > 0.5
        table = {
            "f1_micro": lambda: f1(truth.ravel(), predicted.ravel()),
            "f1_macro": lambda: float(np.mean([f1(truth[:, c], predicted[:, c]) for c in range(truth.shape[1])])),
            "auc": lambda: mean_defined([roc_auc(targets[:, c], predictions[:, c]) for c in range(truth.shape[1])]),
        }
        return {m: table[m]() for m in metrics}

    def predicted_labels(self, predictions, classes, separator):
        names = tf.broadcast_to(tf.constant(classes), tf.shape(predictions))
        chosen = tf.ragged.boolean_mask(names, predictions > 0.5)
        return tf.strings.reduce_join(chosen, axis=-1, separator=separator)
