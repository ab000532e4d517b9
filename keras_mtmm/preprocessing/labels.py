"""Label columns -> targets and masks in TensorFlow, for streamed batches (the NumPy twin: `heads`' task types)."""

from __future__ import annotations

import math

import tensorflow as tf


def encode_labels_tf(
    columns: dict[str, tf.Tensor], tasks: dict, classes_by_task: dict, label_tables: dict, label_separator: str
) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
    """Per task: the targets and 0/1 masks of a batch of raw label columns (`{column: [B]}`).

    A column the batch lacks (another task's dataset) is unlabelled. A label
    outside the known classes fails the input pipeline with a message naming
    the task and the values (`keras_mtmm:` prefixed, so training turns it
    into a `DataError`).
    """

    targets, masks = {}, {}
    batch = tf.shape(next(iter(columns.values())))[0]
    for name, spec in tasks.items():
        raw = columns.get(spec["label"])
        if raw is None:  # another task's dataset: unlabelled for this task
            raw = tf.fill([batch], math.nan) if spec["type"] == "regression" else tf.fill([batch], "")
        if spec["type"] == "regression":
            value = tf.cast(raw, tf.float32)
            present = tf.math.is_finite(value)
            targets[name] = tf.where(present, value, tf.zeros_like(value))[:, None]
            masks[name] = tf.cast(present, tf.float32)
            continue
        classes = classes_by_task[name]
        table = label_tables[name]
        text = tf.strings.strip(raw)
        present = tf.strings.length(text) > 0
        if spec["type"] == "multilabel":
            parts = tf.strings.strip(tf.strings.split(text, label_separator))
            ids = tf.ragged.map_flat_values(table.lookup, parts)
            unknown_parts = tf.logical_and(ids.flat_values < 0, tf.repeat(present, parts.row_lengths()))
            check = _label_check(name, classes, tf.reduce_any(unknown_parts), parts.flat_values, unknown_parts)
            with tf.control_dependencies([check]):
                depth = len(classes)
                hot = tf.ragged.map_flat_values(lambda i, depth=depth: tf.one_hot(tf.maximum(i, 0), depth), ids)
                target = tf.reduce_max(hot, axis=1)  # [B, C]; rows without labels are masked below
            targets[name] = tf.where(present[:, None], target, tf.zeros_like(target))
        else:
            ids = table.lookup(text)
            unknown = tf.logical_and(present, ids < 0)
            check = _label_check(name, classes, tf.reduce_any(unknown), text, unknown)
            with tf.control_dependencies([check]):
                index = tf.where(present, ids, tf.zeros_like(ids))
            targets[name] = (
                tf.cast(index, tf.float32)[:, None] if spec["type"] == "binary" else tf.cast(index, tf.int32)
            )
        masks[name] = tf.cast(present, tf.float32)
    return targets, masks


def _label_check(task: str, classes: list[str], failed, values, where_failed):
    """An assertion (to run before the targets are used) that no label is outside `classes`."""
    return tf.debugging.Assert(
        tf.logical_not(failed),
        [
            f"keras_mtmm: tasks.{task}.label: labels not among the known classes {classes}:",
            tf.boolean_mask(values, where_failed)[:5],
        ],
        summarize=5,
    )
