"""Binary tasks: two classes, the head gives P(positive)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_mtmm.errors import DataError
from keras_mtmm.registry import TASK_TYPES
from keras_mtmm.tasks.base import EPSILON, REDUCTION, TaskType
from keras_mtmm.tasks.scores import roc_auc


@TASK_TYPES.register("binary")
class BinaryTask(TaskType):
    """Two classes; the head gives P(positive) (the second class)."""

    name = "binary"
    activation = "sigmoid"
    metric_names = ("accuracy", "auc")
    default_metrics = ("accuracy", "auc")

    def output_units(self, num_classes: int) -> int:
        return 1

    def loss(self, target_scale=1.0):
        return keras.losses.BinaryCrossentropy(reduction=REDUCTION)

    def keras_metrics(self, metrics, num_classes, top_k):
        table = {
            "accuracy": lambda: keras.metrics.BinaryAccuracy(name="accuracy"),
            "auc": lambda: keras.metrics.AUC(name="auc"),
        }
        return [table[m]() for m in metrics]

    def check_classes(self, classes, where):
        if len(classes) != 2:
            raise DataError(
                where,
                f"a binary task needs exactly 2 classes, found {classes}",
                "fix the labels or use type: multiclass",
            )

    def example_losses(self, predictions, targets, target_scale=1.0):
        # Clip in float32 as Keras does (1 - 1e-7 rounds to 1 - 1.19e-7 there).
        p = np.clip(predictions.astype(np.float32), np.float32(EPSILON), np.float32(1 - EPSILON)).astype(np.float64)
        y = targets.astype(np.float64)
        return np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)), axis=-1)

    def score(self, predictions, targets, metrics, top_k):
        y = targets[:, 0]
        p = predictions[:, 0]
        table = {"accuracy": lambda: float(np.mean((p > 0.5) == (y > 0.5))), "auc": lambda: roc_auc(y, p)}
        return {m: table[m]() for m in metrics}

    def targets_from_indices(self, index):
        return tf.cast(index, tf.float32)[:, None]

    def predicted_labels(self, predictions, classes, separator):
        return tf.where(predictions[:, 0] > 0.5, tf.constant(classes[1]), tf.constant(classes[0]))
