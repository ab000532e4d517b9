"""The label encoder: raw label columns -> targets and 0/1 masks, per task, by its task type's rule.

The rule is one TF function per task type (`TaskType.encode_tf`), run two ways: eagerly over
in-memory column tables by `encode_table_labels` (training's tables, adapt-time checks, evaluation: a
bad label is a `DataError` at its file and line), and inside tf.data for streamed batches by
`encode_labels_tf` (a bad label fails the input pipeline with a `keras_mtmm:` message that training
turns into a `DataError`). A task whose label column a table or batch lacks (another task's
dataset) is unlabelled there.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from keras_mtmm.data.tables import label_column
from keras_mtmm.errors import UnknownLabel, locate_label
from keras_mtmm.tasks import get_task_type
from keras_mtmm.tasks.base import alignment_check, label_check


def encode_table_labels(
    table: dict[str, np.ndarray], tasks: dict, classes_by_task: dict, label_separator: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per task (`{name: {"type", "label"}}`): the targets and masks of a column table, in NumPy."""
    targets, masks = {}, {}
    for name, spec in tasks.items():
        where = f"tasks.{name}.label (column '{spec['label']}')"
        column = label_column(table, spec["label"], spec["type"] == "regression")
        task_type = get_task_type(spec["type"], spec=spec)
        try:
            targets[name], masks[name] = task_type.encode(column, classes_by_task[name], where, label_separator)
        except UnknownLabel as error:
            raise locate_label(error, table, spec["label"], name) from None
        text = spec.get("text_column")
        if text is not None and text in table:
            task_type.check_aligned(table, column, text, name, spec["label"])
    return targets, masks


def encode_labels_tf(
    columns: dict[str, tf.Tensor], tasks: dict, classes_by_task: dict, label_tables: dict, label_separator: str
) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
    """Per task: the targets and 0/1 masks of a batch of raw label columns (`{column: [B]}`), in TF."""
    targets, masks = {}, {}
    batch = tf.shape(next(iter(columns.values())))[0]
    for name, spec in tasks.items():
        raw = columns.get(spec["label"])
        if raw is None:  # another task's dataset: unlabelled for this task
            raw = tf.fill([batch], math.nan) if spec["type"] == "regression" else tf.fill([batch], "")
        classes = classes_by_task[name]
        task_type = get_task_type(spec["type"], spec=spec)
        target, mask, unknown = task_type.encode_tf(raw, classes, label_tables.get(name), label_separator)
        text = tf.strings.strip(raw) if raw.dtype == tf.string else tf.strings.as_string(raw)
        checks = [label_check(name, classes, tf.reduce_any(unknown), text, unknown)]
        if spec.get("text_column") in columns:
            misaligned = task_type.misaligned_tf(raw, columns[spec["text_column"]])
            checks.append(alignment_check(name, tf.reduce_any(misaligned), text, misaligned))
        with tf.control_dependencies(checks):
            targets[name], masks[name] = tf.identity(target), tf.identity(mask)
    return targets, masks
