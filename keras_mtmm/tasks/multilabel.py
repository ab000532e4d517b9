"""Multilabel tasks: any subset of C labels, a sigmoid per label."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_mtmm.cells import as_strings
from keras_mtmm.errors import UnknownLabel
from keras_mtmm.registry import TASK_TYPES
from keras_mtmm.tasks.base import REDUCTION, TaskType, label_check
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

    def encode(self, raw, classes, where, separator):
        lookup = {name: i for i, name in enumerate(classes)}
        strings = as_strings(raw)
        targets = np.zeros((len(strings), len(classes)), dtype=np.float32)
        mask = np.zeros(len(strings), dtype=np.float32)
        for row, value in enumerate(strings):
            if not value:
                continue
            for part in (p.strip() for p in value.split(separator)):
                if part not in lookup:
                    raise UnknownLabel(
                        where, part, row, classes, "fix the label, or list every class in tasks.<task>.classes"
                    )
                targets[row, lookup[part]] = 1.0
            mask[row] = 1.0
        return targets, mask

    def encode_tf(self, raw, classes, table, separator, task):
        text = tf.strings.strip(raw)
        present = tf.strings.length(text) > 0
        parts = tf.strings.strip(tf.strings.split(text, separator))
        ids = tf.ragged.map_flat_values(table.lookup, parts)
        unknown_parts = tf.logical_and(ids.flat_values < 0, tf.repeat(present, parts.row_lengths()))
        check = label_check(task, classes, tf.reduce_any(unknown_parts), parts.flat_values, unknown_parts)
        with tf.control_dependencies([check]):
            depth = len(classes)
            hot = tf.ragged.map_flat_values(lambda i: tf.one_hot(tf.maximum(i, 0), depth), ids)
            target = tf.reduce_max(hot, axis=1)  # [B, C]; rows without labels are masked below
        return tf.where(present[:, None], target, tf.zeros_like(target)), tf.cast(present, tf.float32)

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
