"""Task types: binary, multiclass, multilabel, regression.

A task type knows everything that depends on the kind of label: the head's
width and activation, the Keras loss and metrics used in training, how raw
labels become targets plus a label mask, and the same losses and metrics in
NumPy for evaluation (so an exported model can be scored without Keras).

Missing labels: a task's examples without a label keep their row; their
target is a placeholder and their mask (per-output sample weight) is 0, so
they add nothing to that task's loss or metrics. Losses use the
`mean_with_sample_weight` reduction, so a task's loss is the mean over its
labelled examples only.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_mtmm.data.values import as_strings
from keras_mtmm.errors import BadNumber, DataError, UnknownLabel
from keras_mtmm.registry import TASK_TYPES
from keras_mtmm.tasks.scores import f1, mean_defined, roc_auc  # noqa: F401 (f1, roc_auc: re-exported)

EPSILON = 1e-7  # keras.config.epsilon(): the clip used by Keras' cross-entropies

# Every task loss is the mean over the task's labelled examples (mask = sample weight).
REDUCTION = "mean_with_sample_weight"


@keras.saving.register_keras_serializable(package="keras_mtmm")
class TaskHead(keras.layers.Layer):
    """The output layer of one task: a Dense projection and its activation.

    For regression the output is `dense(x) * target_scale + target_offset`
    (the training targets' std and mean), so the layer learns on a unit scale,
    starts near the mean, and still outputs values in the label's units.

    Args:
        units: output width (1 for binary/regression, the class count otherwise).
        activation: `"sigmoid"`, `"softmax"` or `"linear"`.
        target_scale: multiplies a linear output (regression targets' std).
        target_offset: is added to a linear output (regression targets' mean).

    Example:
        >>> head = TaskHead(units=3, activation="softmax", name="shape")
    """

    def __init__(self, units: int, activation: str, target_scale: float = 1.0, target_offset: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if units < 1:
            raise ValueError(f"TaskHead: units must be >= 1, got {units}")
        if activation not in ("sigmoid", "softmax", "linear"):
            raise ValueError(f"TaskHead: activation must be sigmoid, softmax or linear, got {activation!r}")
        if activation != "linear" and (target_scale != 1.0 or target_offset != 0.0):
            raise ValueError("TaskHead: target_scale/target_offset apply to a linear activation only")
        if target_scale <= 0:
            raise ValueError(f"TaskHead: target_scale must be > 0, got {target_scale}")
        self.units = units
        self.activation = activation
        self.target_scale = float(target_scale)
        self.target_offset = float(target_offset)
        self.dense = keras.layers.Dense(units, activation=activation, dtype="float32", name="dense")

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, inputs):
        outputs = self.dense(inputs)
        if self.target_scale != 1.0 or self.target_offset != 0.0:
            outputs = outputs * self.target_scale + self.target_offset
        return outputs

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": self.activation,
            "target_scale": self.target_scale,
            "target_offset": self.target_offset,
        }


@keras.saving.register_keras_serializable(package="keras_mtmm")
class ScaledMeanSquaredError(keras.losses.Loss):
    """Mean squared error in units of `target_scale`: `mean(((y - ŷ) / scale)²)`.

    With `target_scale` = the training targets' std, a regression loss is on
    the same order as a cross-entropy whatever the label's units, so task
    weights mean what they say.

    Args:
        target_scale: the divisor (the regression targets' std).
    """

    def __init__(
        self,
        target_scale: float = 1.0,
        reduction: str = "mean_with_sample_weight",
        name: str = "scaled_mse",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if target_scale <= 0:
            raise ValueError(f"ScaledMeanSquaredError: target_scale must be > 0, got {target_scale}")
        self.target_scale = float(target_scale)

    def call(self, y_true, y_pred):
        y_true = keras.ops.cast(y_true, y_pred.dtype)
        return keras.ops.mean(keras.ops.square((y_pred - y_true) / self.target_scale), axis=-1)

    def get_config(self):
        return {**super().get_config(), "target_scale": self.target_scale}


class TaskType:
    """What depends on the kind of label. Subclasses are registered by name."""

    name = ""
    activation = "linear"
    metric_names: tuple[str, ...] = ()
    default_metrics: tuple[str, ...] = ()
    has_classes = True

    def output_units(self, num_classes: int) -> int:
        return num_classes

    def loss(self, target_scale: float = 1.0) -> keras.losses.Loss:
        """The Keras loss; `target_scale` is the regression targets' std (ignored by classifiers)."""
        raise NotImplementedError

    def keras_metrics(self, metrics: list[str], num_classes: int, top_k: int) -> list[keras.metrics.Metric]:
        raise NotImplementedError

    def infer_classes(self, raw: np.ndarray, separator: str) -> list[str]:
        values = [v for v in as_strings(raw) if v]
        return sorted(set(values))

    def encode(self, raw: np.ndarray, classes: list[str], where: str, separator: str) -> tuple[np.ndarray, np.ndarray]:
        """Raw labels -> (targets, mask). Unknown labels raise a `DataError` naming `where`."""
        raise NotImplementedError

    def example_losses(self, predictions: np.ndarray, targets: np.ndarray, target_scale: float = 1.0) -> np.ndarray:
        """Per-example loss, computed as Keras computes it."""
        raise NotImplementedError

    def score(
        self, predictions: np.ndarray, targets: np.ndarray, metrics: list[str], top_k: int
    ) -> dict[str, float | None]:
        """Metrics on labelled examples only (the caller drops unlabelled rows)."""
        raise NotImplementedError

    def predicted_labels(self, predictions, classes: list[str], separator: str):
        """The predicted class names as a tf.string [batch] tensor (for serving); None without classes.

        The decision rule is the one `score` uses: argmax, or P > 0.5 per label.
        """
        return None

    def _indices(self, raw: np.ndarray, classes: list[str], where: str) -> tuple[np.ndarray, np.ndarray]:
        strings = as_strings(raw)
        lookup = {name: i for i, name in enumerate(classes)}
        indices = np.zeros(len(strings), dtype=np.int32)
        mask = np.zeros(len(strings), dtype=np.float32)
        for row, value in enumerate(strings):
            if not value:
                continue
            if value not in lookup:
                raise UnknownLabel(
                    where, value, row, classes, "fix the label, or list every class in tasks.<task>.classes"
                )
            indices[row] = lookup[value]
            mask[row] = 1.0
        return indices, mask


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

    def encode(self, raw, classes, where, separator):
        if len(classes) != 2:
            raise DataError(
                where,
                f"a binary task needs exactly 2 classes, found {classes}",
                "fix the labels or use type: multiclass",
            )
        indices, mask = self._indices(raw, classes, where)
        return indices.astype(np.float32)[:, None], mask

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

    def predicted_labels(self, predictions, classes, separator):
        return tf.where(predictions[:, 0] > 0.5, tf.constant(classes[1]), tf.constant(classes[0]))


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

    def encode(self, raw, classes, where, separator):
        if len(classes) < 2:
            raise DataError(
                where, f"a multiclass task needs at least 2 classes, found {classes}", "check the label column"
            )
        return self._indices(raw, classes, where)

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

    def predicted_labels(self, predictions, classes, separator):
        return tf.gather(tf.constant(classes), tf.argmax(predictions, axis=-1))


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

    def encode(self, raw, classes, where, separator):
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
        mask = np.isfinite(values).astype(np.float32)
        return np.where(mask > 0, values, 0.0).astype(np.float32)[:, None], mask

    def example_losses(self, predictions, targets, target_scale=1.0):
        error = (predictions.astype(np.float64) - targets.astype(np.float64)) / target_scale
        return np.mean(error**2, axis=-1)

    def score(self, predictions, targets, metrics, top_k):
        error = predictions[:, 0].astype(np.float64) - targets[:, 0].astype(np.float64)
        table = {"mae": lambda: float(np.mean(np.abs(error))), "rmse": lambda: float(np.sqrt(np.mean(error**2)))}
        return {m: table[m]() for m in metrics}


def get_task_type(name: str, where: str | None = None) -> TaskType:
    """The task type registered as `name` (a `ConfigError` naming `where` if unknown)."""
    return TASK_TYPES.get(name, where)()
