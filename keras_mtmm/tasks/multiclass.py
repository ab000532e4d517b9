"""Multiclass tasks: one class out of C, a softmax head."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_mtmm.errors import DataError
from keras_mtmm.registry import TASK_TYPES
from keras_mtmm.tasks.base import EPSILON, REDUCTION, TaskType


@TASK_TYPES.register("multiclass")
class MulticlassTask(TaskType):
    """One class out of C; the head gives a softmax over the classes."""

    name = "multiclass"
    activation = "softmax"
    metric_names = ("accuracy", "top_k")
    default_metrics = ("accuracy", "top_k")

    def loss(self, target_scale=1.0):
        return keras.losses.SparseCategoricalCrossentropy(reduction=REDUCTION)

    def keras_metrics(self, metrics, num_classes, top_k):
        table = {
            "accuracy": lambda: keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            "top_k": lambda: keras.metrics.SparseTopKCategoricalAccuracy(k=min(top_k, num_classes), name="top_k"),
        }
        return [table[m]() for m in metrics]

    def check_classes(self, classes, where):
        if len(classes) < 2:
            raise DataError(
                where, f"a multiclass task needs at least 2 classes, found {classes}", "check the label column"
            )

    def example_losses(self, predictions, targets, target_scale=1.0):
        p = predictions.astype(np.float64)
        p = p / np.sum(p, axis=-1, keepdims=True)
        p = np.clip(p.astype(np.float32), np.float32(EPSILON), np.float32(1 - EPSILON)).astype(np.float64)
        return -np.log(p[np.arange(len(p)), targets.astype(np.int64)])

    def score(self, predictions, targets, metrics, top_k):
        y = targets.astype(np.int64)
        k = min(top_k, predictions.shape[-1])
        top = np.argsort(-predictions, axis=-1)[:, :k]
        table = {
            "accuracy": lambda: float(np.mean(np.argmax(predictions, axis=-1) == y)),
            "top_k": lambda: float(np.mean(np.any(top == y[:, None], axis=-1))),
        }
        return {m: table[m]() for m in metrics}

    def prior(self, targets, mask, classes):
        counts = np.bincount(np.asarray(targets)[np.asarray(mask) > 0].astype(np.int64), minlength=len(classes))
        return counts / max(counts.sum(), 1)

    def predicted_labels(self, predictions, classes, separator):
        return tf.gather(tf.constant(classes), tf.argmax(predictions, axis=-1))
