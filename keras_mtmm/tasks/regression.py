"""Regression tasks: a real value, the loss in units of the targets' std."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_mtmm.errors import BadNumber
from keras_mtmm.registry import TASK_TYPES
from keras_mtmm.tasks.base import REDUCTION, TaskType
from keras_mtmm.tasks.losses import ScaledMeanSquaredError


@TASK_TYPES.register("regression")
class RegressionTask(TaskType):
    """A real value; the loss is the mean squared error in units of the targets' std."""

    name = "regression"
    metric_names = ("mae", "rmse")
    default_metrics = ("mae", "rmse")
    has_classes = False

    def output_units(self, num_classes):
        return 1

    def loss(self, target_scale=1.0):
        return ScaledMeanSquaredError(target_scale, reduction=REDUCTION)

    def keras_metrics(self, metrics, num_classes, top_k):
        table = {
            "mae": lambda: keras.metrics.MeanAbsoluteError(name="mae"),
            "rmse": lambda: keras.metrics.RootMeanSquaredError(name="rmse"),
        }
        return [table[m]() for m in metrics]

    def infer_classes(self, raw, separator):
        return []

    def raw_tensor(self, raw, where):
        """Numbers (NaN: unlabelled); a cell that is not a finite number is a `BadNumber` at its row."""
        values = np.empty(len(raw), dtype=np.float32)
        for row, value in enumerate(raw):
            if value is None or (isinstance(value, str) and not value.strip()):
                values[row] = np.nan
                continue
            try:
                values[row] = float(value)
                if np.isinf(values[row]):
                    raise ValueError
            except (TypeError, ValueError):
                raise BadNumber(where, value, row, "fix the value or leave the cell empty for 'unlabelled'") from None
        return tf.constant(values)

    def encode_tf(self, raw, classes, table, separator):
        value = tf.cast(raw, tf.float32)
        present = tf.math.is_finite(value)
        targets = tf.where(present, value, tf.zeros_like(value))[:, None]
        return targets, tf.cast(present, tf.float32), tf.zeros_like(present)

    def example_losses(self, predictions, targets, target_scale=1.0):
        error = (predictions.astype(np.float64) - targets.astype(np.float64)) / target_scale
        return np.mean(error**2, axis=-1)

    def score(self, predictions, targets, metrics, top_k):
        error = predictions[:, 0].astype(np.float64) - targets[:, 0].astype(np.float64)
        table = {"mae": lambda: float(np.mean(np.abs(error))), "rmse": lambda: float(np.sqrt(np.mean(error**2)))}
        return {m: table[m]() for m in metrics}
