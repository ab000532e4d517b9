"""tf.data input pipelines: raw column table -> batches of (model inputs, targets, masks)."""

from __future__ import annotations

import contextlib

import numpy as np
import tensorflow as tf

from keras_mtmm.data.sampling import AnnealedSampler, mix_interleaved, mix_joint
from keras_mtmm.data.tables import StreamSplit, num_rows
from keras_mtmm.errors import DataError
from keras_mtmm.tasks.base import FIX_MARK


def make_dataset(
    preprocessor,
    table,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    shuffle_buffer: int = 4096,
    split: str = "train",
    repeat: bool = False,
    cache: bool = False,
    skip_bad: bool = False,
    valid_rows: int | None = None,
    skip_batches: int = 0,
    pass_number: tf.Variable | None = None,
) -> tf.data.Dataset:
    """A batched dataset of `(inputs, targets, masks)` dicts for `Model.fit`/`evaluate`.

    The raw values are batched first, then the Preprocessor runs once per
    batch in parallel `map` calls (the same `transform` the export serves).
    Masks are per-output sample weights: 0 where a task's label is missing.

    A streaming split (`RecordSplit`, from TFRecords) goes through the same
    steps on its serialized records, with parsing, label encoding and
    preprocessing in TensorFlow: the same batches as its rows in a table.

    Args:
        preprocessor: an adapted `Preprocessor`.
        table: a column table, or a streaming `RecordSplit`.
        batch_size: examples per batch.
        shuffle: reshuffle every epoch (training).
        seed: the shuffle seed.
        shuffle_buffer: the shuffle buffer size (capped at the table size).
        split: the split's name, for error messages.
        repeat: repeat forever (when an epoch is a fixed number of steps).
        cache: keep the preprocessed batches in memory after the first pass
            (then only the order of whole batches is reshuffled).
        skip_bad: (streaming splits) leave out records whose image does not
            decode, instead of failing (`data.on_bad_record: skip`).
        valid_rows: (streaming splits, with `skip_bad`) the records left once
            bad ones are skipped, if counted: the epoch's length for Keras.
        skip_batches: leave out the stream's first batches (a resumed run; with
            `repeat`, the stream is the same for a seed in every process, so
            the run continues where it stopped). Skipped before preprocessing
            unless `cache` is on.
        pass_number: (with `cache`, instead of `repeat`) a variable holding the
            number of the data pass to give: each iteration of the dataset is
            that one pass over the cache, in the order the repeated stream gives
            it, and ends with it. The training loop sets it to the epoch.
    """
    rows = num_rows(table)
    if rows == 0:
        raise DataError(f"data ({split} split)", "the split is empty", "add rows or change data.*_fraction")
    if isinstance(table, StreamSplit):  # one dataset after the other (validation, evaluation)
        parts = [
            make_dataset(preprocessor, part, batch_size, split=f"{name} ({split})", skip_bad=skip_bad)
            for name, part in table.parts.items()
            if num_rows(part) > 0
        ]
        dataset = parts[0]
        for part in parts[1:]:
            dataset = dataset.concatenate(part)
        return _repeat_and_skip(dataset, repeat, skip_batches).prefetch(tf.data.AUTOTUNE)
    if not isinstance(table, dict):
        rows = valid_rows if skip_bad and valid_rows is not None else None
        return _record_dataset(
            preprocessor,
            table,
            batch_size,
            shuffle,
            seed,
            shuffle_buffer,
            repeat,
            cache,
            skip_bad,
            rows,
            skip_batches,
            pass_number,
        )
    raw = preprocessor.raw_inputs(table)
    targets, masks = preprocessor.encode_labels(table)
    examples = tf.data.Dataset.from_tensor_slices((raw, targets, masks))
    dataset = _batches(
        examples,
        lambda inputs, y, w: (preprocessor.transform(inputs), y, w),
        rows,
        batch_size,
        shuffle,
        seed,
        min(shuffle_buffer, rows),
        repeat,
        cache,
        skip_batches,
        pass_number,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def _batches(examples, prepare, rows, batch_size, shuffle, seed, buffer, repeat, cache, skip_batches, pass_number=None):
    """examples -> (shuffle) -> batch -> prepare, once or as an endless stream of data passes.

    A repeated stream gives data pass `p` its own order, seeded by (seed, p), with no shuffle
    state carried between passes: the stream is the same in every process and under every
    tf.distribute strategy, and a resumed run enters it at pass `skip // passes` without
    reading the passes before. Without `repeat`, one pass, reshuffled at each iteration.
    Raw batches are skipped before `prepare` (the costly part) unless `cache` is on.
    """
    passes = -(-rows // batch_size) if rows else None

    def one_pass(number):
        ordered = examples
        if shuffle and not cache:
            ordered = _pass_shuffle(examples, buffer, seed, number)
        return ordered.batch(batch_size)

    def map_prepared(dataset):
        return dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    if cache:
        prepared = map_prepared(examples.batch(batch_size))
        return _cached(prepared, batch_size, shuffle, seed, repeat, skip_batches, pass_number)
    if pass_number is not None:
        raise ValueError("make_dataset: pass_number needs cache=True")
    if not repeat:
        ordered = examples.shuffle(buffer, seed=seed, reshuffle_each_iteration=True) if shuffle else examples
        return map_prepared(ordered.batch(batch_size))
    return map_prepared(_passes(one_pass, skip_batches, passes))


def _cached(prepared, batch_size: int, shuffle: bool, seed: int, repeat: bool, skip_batches: int, pass_number=None):
    """The examples of `prepared` preprocessed once, kept in memory, and reshuffled example by example.

    One pass over `prepared` (in order) fills NumPy arrays; each data pass then
    gathers its batches from them by a permutation of the row indices (seeded by
    `(seed, pass)`, as `_pass_shuffle` orders an uncached stream), so an epoch
    costs no preprocessing, and batches are not fixed once and for all. With
    `pass_number` (a variable), each iteration is the one pass it names, read
    when the iteration starts; its length is known (`assert_cardinality`).
    """
    tensors = _materialize(prepared)
    rows = int(tf.nest.flatten(tensors)[0].shape[0])
    if rows == 0:
        raise DataError("data (train split)", "no example is left to train on", "check the data")
    indices = tf.range(rows, dtype=tf.int64)

    def one_pass(number):
        order = indices
        if shuffle:
            pass_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(number, tf.int64)])
            order = tf.random.experimental.stateless_shuffle(indices, seed=pass_seed)
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    if pass_number is not None:
        batches = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).flat_map(
            lambda _: one_pass(pass_number.read_value())
        )
        if skip_batches:
            batches = batches.skip(skip_batches)
        batches = batches.apply(tf.data.experimental.assert_cardinality(-(-rows // batch_size) - skip_batches))
    elif repeat:
        batches = _passes(one_pass, skip_batches, -(-rows // batch_size))
    elif shuffle:
        batches = tf.data.Dataset.range(rows).shuffle(rows, seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    else:
        batches = one_pass(0)
    table = tf.data.Dataset.from_tensors(tensors).repeat()
    return tf.data.Dataset.zip(batches, table).map(
        lambda rows_of_batch, columns: tf.nest.map_structure(lambda c: tf.gather(c, rows_of_batch), columns),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _materialize(prepared: tf.data.Dataset):
    """Every batch of `prepared`, concatenated: the structure of one batch, of NumPy arrays."""
    batches = list(prepared.as_numpy_iterator())
    if not batches:
        return tf.nest.map_structure(
            lambda spec: np.zeros([0, *spec.shape[1:]], spec.dtype.as_numpy_dtype), prepared.element_spec
        )
    return tf.nest.map_structure(lambda *parts: np.concatenate(parts), *batches)


def prepared_size(preprocessor, table, batch_size: int, skip_bad: bool = False) -> tuple[int, int]:
    """(estimated bytes of the whole split once preprocessed, rows): from one preprocessed batch."""
    rows = num_rows(table)
    first = next(iter(make_dataset(preprocessor, table, min(batch_size, max(rows, 1)), skip_bad=skip_bad)), None)
    if first is None:
        return 0, rows
    parts = [np.asarray(t) for t in tf.nest.flatten(first)]
    batch_rows = parts[0].shape[0] if parts[0].ndim else 1
    per_row = sum(p.nbytes if p.dtype != object else sum(len(v) for v in p.ravel()) for p in parts) / batch_rows
    return int(per_row * rows), rows


def _passes(one_pass, skip_batches: int, batches_per_pass: int | None):
    first, rest = divmod(skip_batches, batches_per_pass) if batches_per_pass else (0, skip_batches)
    stream = tf.data.Dataset.counter(first).flat_map(one_pass)
    return stream.skip(rest) if rest else stream


def _pass_shuffle(dataset, buffer: int, seed: int, number):
    """`dataset` shuffled once for data pass `number` (a tensor: traced inside `flat_map`).

    `Dataset.shuffle` pairs its op seed with the graph-level seed, which a
    traced function inherits from `tf.random.set_seed` (and so from
    `keras.utils.set_random_seed`): with a global seed of 0 (or a multiple of
    2**31 - 1), TF's `(seed, seed2) == (0, 0)` check reads the pass-seed
    tensor as a Python bool and tracing fails; with any other global seed, the
    data order would follow whatever seed the caller last set. The graph seed
    is therefore cleared while the shuffle op is made: the order is a function
    of `(seed, number)` alone, whatever global state a user or a test left.
    """
    graph = tf.compat.v1.get_default_graph()
    saved = graph.seed
    graph.seed = None
    try:
        pass_seed = tf.constant(seed, tf.int64) * 1_000_003 + tf.cast(number, tf.int64)
        return dataset.shuffle(buffer, seed=pass_seed, reshuffle_each_iteration=False)
    finally:
        graph.seed = saved


def _repeat_and_skip(dataset, repeat: bool, skip_batches: int):
    if repeat:
        dataset = dataset.repeat()
    return dataset.skip(skip_batches) if skip_batches else dataset


def _record_dataset(
    preprocessor,
    split,
    batch_size,
    shuffle,
    seed,
    shuffle_buffer,
    repeat,
    cache,
    skip_bad,
    rows,
    skip_batches=0,
    pass_number=None,
):
    """Serialized records -> (shuffle) -> batch -> parse + labels + preprocessing, in parallel."""
    records = split.valid_records() if skip_bad else split.records()

    def features(serialized):
        columns = split.parse(serialized)
        targets, masks = preprocessor.encode_labels_tf(columns)
        return preprocessor.transform(preprocessor.raw_inputs_tf(columns)), targets, masks

    rows = split.rows if not skip_bad else rows
    buffer = min(shuffle_buffer, split.rows)
    dataset = _batches(
        records, features, rows, batch_size, shuffle, seed, buffer, repeat, cache, skip_batches, pass_number
    )
    if rows is not None and not repeat:  # Keras then knows the epoch's length, as it does for a table
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(-(-rows // batch_size)))
    return dataset.prefetch(tf.data.AUTOTUNE)


def make_mixed_dataset(
    preprocessor,
    split: StreamSplit,
    batch_size: int,
    mixing: str,
    sampler,
    epochs: int,
    steps_per_epoch: int,
    seed: int = 0,
    shuffle_buffer: int = 4096,
    skip_bad: bool = False,
) -> tuple[tf.data.Dataset, list[dict[str, float]]]:
    """The training stream of several datasets (one per `StreamSplit` part), mixed by a task sampler.

    Each dataset is shuffled and repeated on its own; `mixing` `joint` draws
    every example of a batch from dataset i with probability p_i, and
    `interleaved` draws whole batches of one dataset. The probabilities
    follow `sampler.schedule` over the epochs (constant except for
    `annealed`, whose stream then holds exactly `epochs · steps_per_epoch`
    batches).

    Returns:
        `(dataset, probabilities per epoch)`; pass `steps_per_epoch` to `fit`.
    """
    sizes = {name: num_rows(part) for name, part in split.parts.items() if num_rows(part) > 0}
    schedule = sampler.schedule(sizes, epochs)
    streams = {
        name: make_dataset(
            preprocessor,
            split.parts[name],
            batch_size,
            shuffle=True,
            seed=seed + i,
            shuffle_buffer=shuffle_buffer,
            split=f"{name} (train)",
            repeat=True,
            skip_bad=skip_bad,
        )
        for i, name in enumerate(sizes)
    }
    probabilities = schedule if isinstance(sampler, AnnealedSampler) else schedule[0]
    if mixing == "interleaved":
        dataset = mix_interleaved(streams, probabilities, steps_per_epoch, seed)
    else:
        examples = {name: stream.unbatch() for name, stream in streams.items()}
        dataset = mix_joint(examples, probabilities, batch_size, steps_per_epoch, seed)
    return dataset.prefetch(tf.data.AUTOTUNE), schedule


def make_input_dataset(preprocessor, raw_inputs: dict[str, np.ndarray], batch_size: int) -> tf.data.Dataset:
    """A batched dataset of model inputs only (for `Model.predict`)."""
    dataset = tf.data.Dataset.from_tensor_slices(raw_inputs).batch(batch_size)
    return dataset.map(preprocessor.transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
        tf.data.AUTOTUNE
    )


@contextlib.contextmanager
def data_errors():
    """Turn a keras_mtmm check that failed inside the input pipeline into a `DataError`."""
    try:
        yield
    except tf.errors.DataLossError as error:
        detail = " ".join(error.message.split())[:300]
        raise DataError(
            "data",
            f"a TFRecord shard is truncated or corrupt ({detail})",
            "re-run `mtmm prepare` to rewrite the shards",
        ) from None
    except tf.errors.InvalidArgumentError as error:
        message = error.message
        if "keras_mtmm:" not in message:
            if "image" in message.lower() and ("decode" in message.lower() or "format" in message.lower()):
                raise DataError(
                    "data",
                    f"an image in the input records does not decode ({' '.join(message.split())[:200]})",
                    "re-run `mtmm prepare` (it checks every image), or set data.on_bad_record: skip",
                ) from None
            raise
        detail = message[message.index("keras_mtmm:") + len("keras_mtmm:") :].strip()
        where, _, what = detail.partition(": ")
        what, _, rest = what.partition(FIX_MARK)  # (tasks.base.pipeline_check: "what ##fix##: values")
        fix, _, values = rest.partition(FIX_MARK)
        values = values.lstrip(':"').strip()  # (the first offending values, after the message's closing quote)
        what = f"{what.strip()}: {values}" if values else what
        raise DataError(where, " ".join(what.split())[:500], fix or "fix the data") from None
