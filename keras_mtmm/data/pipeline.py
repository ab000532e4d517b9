"""tf.data input pipelines: raw column table -> batches of (model inputs, targets, masks)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_mtmm.data.tables import num_rows
from keras_mtmm.errors import DataError


def make_dataset(
    preprocessor,
    table: dict[str, np.ndarray],
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    shuffle_buffer: int = 4096,
    split: str = "train",
    repeat: bool = False,
    cache: bool = False,
) -> tf.data.Dataset:
    """A batched dataset of `(inputs, targets, masks)` dicts for `Model.fit`/`evaluate`.

    The raw values are batched first, then the Preprocessor runs once per
    batch in parallel `map` calls (the same `transform` the export serves).
    Masks are per-output sample weights: 0 where a task's label is missing.

    Args:
        preprocessor: an adapted `Preprocessor`.
        table: a column table.
        batch_size: examples per batch.
        shuffle: reshuffle every epoch (training).
        seed: the shuffle seed.
        shuffle_buffer: the shuffle buffer size (capped at the table size).
        split: the split's name, for error messages.
        repeat: repeat forever (when an epoch is a fixed number of steps).
        cache: keep the preprocessed batches in memory after the first pass
            (then only the order of whole batches is reshuffled).
    """
    rows = num_rows(table)
    if rows == 0:
        raise DataError(f"data ({split} split)", "the split is empty", "add rows or change data.*_fraction")
    raw = preprocessor.raw_inputs(table)
    targets, masks = preprocessor.encode_labels(table)
    dataset = tf.data.Dataset.from_tensor_slices((raw, targets, masks))
    if shuffle and not cache:
        dataset = dataset.shuffle(min(shuffle_buffer, rows), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(
        lambda inputs, y, w: (preprocessor.transform(inputs), y, w),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if cache:
        dataset = dataset.cache()
        if shuffle:
            batches = -(-rows // batch_size)
            dataset = dataset.shuffle(batches, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset.prefetch(tf.data.AUTOTUNE)


def make_input_dataset(preprocessor, raw_inputs: dict[str, np.ndarray], batch_size: int) -> tf.data.Dataset:
    """A batched dataset of model inputs only (for `Model.predict`)."""
    dataset = tf.data.Dataset.from_tensor_slices(raw_inputs).batch(batch_size)
    return dataset.map(preprocessor.transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
        tf.data.AUTOTUNE
    )
