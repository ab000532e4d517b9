"""What the Preprocessor learns from the training table: vocabularies, NaN-aware statistics, target scales."""

from __future__ import annotations

from collections import Counter

import keras
import numpy as np
import tensorflow as tf

from keras_mtmm.cells import as_strings
from keras_mtmm.errors import DataError, UnknownLabel, locate_label
from keras_mtmm.tasks import get_task_type


def text_vocabulary(
    texts: np.ndarray, max_tokens: int, sequence_length: int, standardize: str | None = "lower_and_strip_punctuation"
) -> list[str]:
    layer = keras.layers.TextVectorization(
        max_tokens=max_tokens, output_sequence_length=sequence_length, standardize=standardize
    )
    layer.adapt(tf.constant(list(texts), dtype=tf.string), batch_size=1024)
    vocabulary = layer.get_vocabulary(include_special_tokens=False)
    if not vocabulary:
        raise DataError("text", "the training texts hold no token", "check the text column")
    return vocabulary


def check_finite_training_values(values: np.ndarray, columns: list[str]) -> None:
    """±inf in a training feature would train a NaN model (NaN is a missing value, and fine)."""
    infinite = np.isinf(values.astype(np.float64))
    if infinite.any():
        row, index = (int(i[0]) for i in np.nonzero(infinite))
        raise DataError(
            f"the training data: column '{columns[index]}'",
            f"row {row} holds {float(values[row, index])!r}, which is not a finite number",
            "fix the value or leave it empty for a missing value (or set data.on_bad_record: skip for CSV data)",
        )


def numeric_statistics(values: np.ndarray) -> dict[str, list[float]]:
    values = values.astype(np.float64)
    present = np.isfinite(values)
    counts = present.sum(axis=0)
    safe = np.where(present, values, 0.0)
    mean = np.where(counts > 0, safe.sum(axis=0) / np.maximum(counts, 1), 0.0)
    squares = np.where(present, (values - mean) ** 2, 0.0).sum(axis=0)
    variance = np.where(counts > 0, squares / np.maximum(counts, 1), 1.0)
    variance = np.where(variance > 1e-12, variance, 1.0)
    return {"mean": mean.tolist(), "variance": variance.tolist()}


def target_statistics(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"mean": 0.0, "std": 1.0}
    std = float(np.std(values.astype(np.float64)))
    return {"mean": float(np.mean(values.astype(np.float64))), "std": std if std > 1e-12 else 1.0}


def category_vocabulary(values: np.ndarray, max_tokens: int) -> list[str]:
    counts = Counter(v for v in as_strings(values) if v)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [value for value, _ in ranked[:max_tokens]]


def adapt_labels(tasks: dict, table, separator: str) -> tuple[dict, dict]:
    """`({task: class names}, {regression task: target statistics})` learned from the training table.

    Classes not listed in the config are the labels seen; a regression label that is not a number,
    or a third class in a binary task, is an error at its file, line and column.
    """
    classes_by_task, targets_by_task = {}, {}
    for name, spec in tasks.items():
        task_type = get_task_type(spec["type"])
        classes = spec["classes"]
        if classes is None:
            classes = task_type.infer_classes(table[spec["label"]], separator)
            if spec["type"] == "binary" and len(classes) > 2:
                raise binary_class_error(table, spec["label"], name, classes)
        classes_by_task[name] = list(classes)
        if not task_type.has_classes:
            try:
                targets, mask = task_type.encode(table[spec["label"]], [], f"tasks.{name}.label", separator)
            except UnknownLabel as error:
                raise locate_label(error, table, spec["label"], name) from None
            targets_by_task[name] = target_statistics(targets[mask > 0, 0])
    return classes_by_task, targets_by_task


def binary_class_error(table, column: str, task: str, classes: list[str]) -> DataError:
    """A binary task whose labels hold more than 2 classes: the rarest one, with its count and first row's place."""
    values = as_strings(table[column])
    counts = {name: int((values == name).sum()) for name in classes}
    rarest = min(classes, key=lambda name: counts[name])
    first = int((values == rarest).argmax())
    place = table.where(first) if hasattr(table, "where") else None
    at = f"{place}: column '{column}'" if place else f"row {first}"
    return DataError(
        f"tasks.{task}.label (column '{column}')",
        f"a binary task needs exactly 2 classes, found {classes}; the rarest, {rarest!r} "
        f"({counts[rarest]} row{'s' if counts[rarest] != 1 else ''}), is first at {at}",
        f"fix the labels, list the two classes in tasks.{task}.classes, or use type: multiclass",
    )
