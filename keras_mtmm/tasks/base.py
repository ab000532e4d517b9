"""The task type: what depends on the kind of label (binary, multiclass, multilabel, regression, ...).

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

import functools

import keras
import numpy as np
import tensorflow as tf

from keras_mtmm.cells import as_strings
from keras_mtmm.errors import UnknownLabel
from keras_mtmm.registry import TASK_TYPES

EPSILON = 1e-7  # keras.config.epsilon(): the clip used by Keras' cross-entropies

# Every task loss is the mean over the task's labelled examples (mask = sample weight).
REDUCTION = "mean_with_sample_weight"


class TaskType:
    """What depends on the kind of label. Subclasses are registered by name."""

    name = ""
    activation = "linear"
    metric_names: tuple[str, ...] = ()
    default_metrics: tuple[str, ...] = ()
    has_classes = True
    per_token = False  # one output per token of a text modality (`tasks.<t>.modality`), targets [B, L]
    settings: tuple[str, ...] = ()  # the task spec's keys the type is made with (`get_task_type(spec=...)`)
    numpy_metrics: tuple[str, ...] = ()  # metrics with no Keras counterpart: scored on validation only
    needs_label = True  # False: the targets come from the inputs (a masked language model's text)
    reads_vocabulary = False  # its classes are its text modality's vocabulary

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
        """A table's raw labels -> (targets, mask) in NumPy, by the one rule `encode_tf` (run eagerly).

        A label outside `classes` is an `UnknownLabel` at its row (which `locate_label` places at its
        file and line); classes that cannot make this task are a `DataError` naming `where`.
        """
        self.check_classes(classes, where)
        eager = tf.executing_eagerly()  # (one table per class list: scoring encodes batch by batch)
        table = (_eager_table(tuple(classes)) if eager else class_table(classes)) if classes else None
        targets, mask, unknown = self.encode_tf(self.raw_tensor(raw, where), classes, table, separator)
        unknown = np.asarray(unknown)
        if unknown.any():
            row = int(np.argmax(unknown))
            label = self.unknown_label(as_strings(raw[row : row + 1])[0], classes, separator)
            raise UnknownLabel(where, label, row, classes, "fix the label, or list every class in tasks.<task>.classes")
        return np.asarray(targets), np.asarray(mask)

    def check_classes(self, classes: list[str], where: str) -> None:
        """A `DataError` naming `where` if `classes` cannot make this task (e.g. a binary task's 3)."""

    def raw_tensor(self, raw: np.ndarray, where: str) -> tf.Tensor:
        """A table's raw label column as `encode_tf` reads it: stripped strings, "" = missing."""
        return tf.constant(as_strings(raw).reshape(-1).tolist(), tf.string, shape=[len(raw)])

    def unknown_label(self, cell: str, classes: list[str], separator: str) -> str:
        """The label of `cell` that is not among `classes` (for the error)."""
        return cell

    def example_losses(self, predictions: np.ndarray, targets: np.ndarray, target_scale: float = 1.0) -> np.ndarray:
        """Per-example loss, computed as Keras computes it."""
        raise NotImplementedError

    def score(
        self, predictions: np.ndarray, targets: np.ndarray, metrics: list[str], top_k: int
    ) -> dict[str, float | None]:
        """Metrics on labelled examples only (the caller drops unlabelled rows)."""
        raise NotImplementedError

    def labelled_scores(
        self, predictions: np.ndarray, targets: np.ndarray, mask: np.ndarray, metrics: list[str], spec: dict
    ) -> tuple[int, dict[str, float | None]]:
        """`(labelled rows, {"loss", <metric>...})` over the rows `mask` marks (`spec`: the task's metadata)."""
        labelled = np.asarray(mask) > 0
        count = int(labelled.sum())
        if count == 0:
            return count, {"loss": 0.0, **{m: None for m in metrics}}
        prediction, target = np.asarray(predictions)[labelled], np.asarray(targets)[labelled]
        losses = self.example_losses(prediction, target, spec.get("target_scale", 1.0))
        return count, {"loss": float(np.mean(losses)), **self.score(prediction, target, metrics, spec.get("top_k", 2))}

    def prior(self, targets: np.ndarray, mask: np.ndarray, classes: list[str]) -> np.ndarray:
        """The label prior, one row's constant prediction: class frequencies, positive rates or the mean."""
        target = np.asarray(targets)[np.asarray(mask) > 0]
        return target.reshape(len(target), -1).mean(axis=0) if len(target) else np.zeros(1)

    def encode_tf(self, raw, classes: list[str], table, separator: str):
        """The label encoding rule: raw labels `[B]` -> (targets, mask, unknown), in TF.

        Run inside tf.data for streamed batches and eagerly for tables (`encode`). `table` maps a
        class name to its index (-1: unknown; `class_table`); `unknown` (bool `[B]`) marks the labels
        outside the classes (their targets are placeholders), which the caller turns into an error.
        """
        text = tf.strings.strip(raw)
        present = tf.strings.length(text) > 0
        ids = table.lookup(text)
        unknown = tf.logical_and(present, ids < 0)
        index = tf.where(tf.logical_and(present, tf.logical_not(unknown)), ids, tf.zeros_like(ids))
        return self.targets_from_indices(index), tf.cast(present, tf.float32), unknown

    def targets_from_indices(self, index):
        """The targets of class indices `[B]` (int64), as `encode` gives them."""
        return tf.cast(index, tf.int32)

    def predicted_labels(self, predictions, classes: list[str], separator: str):
        """The predicted class names as a tf.string [batch] tensor (for serving); None without classes.

        The decision rule is the one `score` uses: argmax, or P > 0.5 per label.
        """
        return None


@functools.lru_cache(maxsize=64)
def _eager_table(classes: tuple[str, ...]) -> tf.lookup.StaticHashTable:
    return class_table(list(classes))


def class_table(classes: list[str]) -> tf.lookup.StaticHashTable | None:
    """The lookup of a task's classes: name -> index (int64), -1 for any other label; None without classes."""
    if not classes:
        return None
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(classes, tf.string), tf.range(len(classes), dtype=tf.int64)),
        default_value=-1,
    )


def pipeline_check(where: str, what: str, fix: str, failed, values, where_failed):
    """An assertion for the input pipeline: when `failed`, it stops it with `where`, `what`, `fix` and the
    first offending values, which `keras_mtmm.data.pipeline.data_errors` turns into one `DataError`."""
    return tf.debugging.Assert(
        tf.logical_not(failed),
        [f"keras_mtmm: {where}: {what} {FIX_MARK}{fix}{FIX_MARK}:", tf.boolean_mask(values, where_failed)[:5]],
        summarize=5,
    )


FIX_MARK = "##"  # around the fix in a `pipeline_check` message


def label_check(task: str, classes: list[str], failed, values, where_failed):
    """An assertion (to run before the targets are used) that no label is outside `classes`."""
    what, fix = f"labels not among the known classes {classes}", "fix the data, or list every class in the config"
    return pipeline_check(f"tasks.{task}.label", what, fix, failed, values, where_failed)


def labelled_row_mask(mask: np.ndarray) -> np.ndarray:
    """Which rows a label mask marks (`[N]` bool): a token task's row, where any of its tokens is labelled."""
    mask = np.asarray(mask)
    return (mask.reshape(len(mask), -1) > 0).any(axis=1)


def labelled_rows(mask: np.ndarray) -> int:
    """The rows a label mask marks: a row of a token task counts once, however many of its tokens."""
    return int(labelled_row_mask(mask).sum())


def task_settings(config, task) -> dict:
    """A task spec's keys besides type and label: a token task's text modality, its length and its column."""
    if not getattr(task, "modality", None) or task.modality not in config.modalities:
        return {}
    modality = config.modalities[task.modality]
    standardize = modality.get().standardize
    return {
        "modality": task.modality,
        "sequence_length": modality.get().sequence_length,
        "text_column": modality.columns[0],
        "standardize": "lower" if standardize == "auto" else standardize,
    }


def alignment_check(task: str, failed, values, where_failed):
    """An assertion that every row of a token task has one tag per word of its text."""
    what, fix = "rows whose tags are not one per word of the text", "fix the data: give one tag per word of the text"
    return pipeline_check(f"tasks.{task}.label", what, fix, failed, values, where_failed)


def get_task_type(name: str, where: str | None = None, spec: dict | None = None) -> TaskType:
    """The task type registered as `name` (a `ConfigError` naming `where` if unknown).

    `spec` (a task's spec dict) gives the type the settings it is made with (`TaskType.settings`,
    e.g. a token task's `sequence_length`); the label rule of such a type needs them.
    """
    cls = TASK_TYPES.get(name, where)
    return cls(**{key: spec[key] for key in cls.settings if key in spec}) if spec else cls()
