"""Sharded TFRecord data: `mtmm prepare` writes it, `data.source: tfrecord` streams it.

A prepared folder holds, per split, shards of `tf.train.Example` records
(`<split>-00000-of-00004.tfrecord`, ...) and one `schema.json`:

    {"format": "keras_mtmm.tfrecord", "version": 1,
     "columns": {"image": {"kind": "image", "dtype": "bytes"},          # raw encoded image bytes
                 "weight_kg": {"kind": "numeric", "dtype": "float"},    # NaN = missing
                 "shape": {"kind": "label", "dtype": "bytes"}, ...},    # "" = unlabelled
     "splits": {"train": {"files": [...], "rows": 3200}, ...},
     "tasks": {"shape": {"label": "shape", "type": "multiclass", "classes": [...],
                         "labelled": {"train": 3020, ...}}, ...}}

Every configured column is one feature: bytes features (`bytes_list`) for
images, text, categories and classification labels, float features
(`float_list`) for numeric columns and regression labels. Rows go to the
shards round-robin (row i to shard i mod N), so reading the shards
interleaved one record at a time gives back the split's row order: training
from the shards sees exactly the batches training from the source does.

Reading streams: the shard files are interleaved (`data.read_parallelism`
files at once), records are shuffled in a bounded buffer, batched, parsed
and preprocessed in parallel (`AUTOTUNE`), and prefetched, so memory does
not grow with the data. Only a bounded sample (`data.adapt_rows` rows) is
read into memory, to adapt the Preprocessor.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from keras_mtmm.cells import as_strings
from keras_mtmm.data.columns import cell_kind
from keras_mtmm.data.tables import load_splits
from keras_mtmm.data.tfrecord_schema import (  # noqa: F401 (SCHEMA_VERSION: re-exported)
    SCHEMA_FILE,
    SCHEMA_FORMAT,
    SCHEMA_VERSION,
    check_kinds,
    read_schema,
    shard_files,
)
from keras_mtmm.errors import DataError, UserError
from keras_mtmm.registry import MODALITY_TYPES, SOURCES
from keras_mtmm.tasks import get_task_type
from keras_mtmm.tasks.base import labelled_rows, task_settings

SPLIT_NAMES = ("train", "validation", "test")


class RecordSplit:
    """One split of a prepared TFRecord folder: its shard files, row count and column schema.

    Args:
        name: the split's name.
        files: the shard files, in order.
        rows: the number of records (from the schema).
        columns: `{column: {"kind": ..., "dtype": "bytes" | "float"}}`.
        read_parallelism: shard files read at once.
        tasks: the schema's task entries (classes over the whole training split,
            labelled counts per split).
        skip_bad: reading it as tables leaves out records whose image does not
            decode (`data.on_bad_record: skip`).
    """

    def __init__(
        self,
        name: str,
        files: list[str],
        rows: int,
        columns: dict[str, dict],
        read_parallelism: int = 16,
        tasks: dict[str, dict] | None = None,
        skip_bad: bool = False,
    ):
        self.name = name
        self.files = list(files)
        self.rows = int(rows)
        self.columns = dict(columns)
        self.read_parallelism = max(1, int(read_parallelism))
        self.tasks = dict(tasks or {})
        self.skip_bad = bool(skip_bad)

    def __len__(self) -> int:
        return self.rows

    def records(self):
        """The serialized records, in row order (shards interleaved one record at a time)."""
        import tensorflow as tf

        if not self.files:
            return tf.data.Dataset.from_tensor_slices(tf.constant([], dtype=tf.string))
        files = tf.data.Dataset.from_tensor_slices(self.files)
        return files.interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(len(self.files), self.read_parallelism),
            block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    def valid_records(self):
        """The split's serialized records, less those with a file (an image, a WAV) that does not decode
        (`on_bad_record: skip`).

        Each record's files are decoded once more for the check (failures are
        dropped with `ignore_errors`), so skipping costs a second decode.
        """
        import tensorflow as tf

        files = {name: spec["kind"] for name, spec in self.columns.items() if cell_kind(spec["kind"]) == "file"}

        def checked(record):
            columns = self.parse(record[None])
            checks = []
            for name, kind in files.items():
                encoded = columns[name][0]
                decodes = MODALITY_TYPES.get(kind)().decodes
                checks.append(
                    tf.cond(
                        tf.strings.length(encoded) > 0,
                        lambda encoded=encoded, decodes=decodes: tf.cast(decodes(encoded), tf.float32),
                        lambda: tf.constant(0.0),
                    )
                )
            return record, tf.stack(checks) if checks else tf.zeros([0], tf.float32)

        checked_records = self.records().map(checked, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return checked_records.ignore_errors().map(lambda record, _: record)

    def parse(self, serialized):
        """A batch of serialized records -> `{column: tensor [B]}` (bytes -> tf.string, float -> float32)."""
        import tensorflow as tf

        features = {
            name: tf.io.FixedLenFeature([], tf.string, default_value="")
            if spec["dtype"] == "bytes"
            else tf.io.FixedLenFeature([], tf.float32, default_value=math.nan)
            for name, spec in self.columns.items()
        }
        return tf.io.parse_example(serialized, features)

    def batches(self, batch_size: int):
        """A dataset of parsed column batches, in row order (less bad records, with `skip_bad`)."""
        import tensorflow as tf

        records = self.valid_records() if self.skip_bad else self.records()
        return records.batch(batch_size).map(self.parse, num_parallel_calls=tf.data.AUTOTUNE)

    def tables(self, batch_size: int = 1024, max_rows: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Column tables (NumPy, as the CSV source gives them) of consecutive rows, batch by batch."""
        seen = 0
        for batch in self.batches(batch_size):
            table = {name: _to_numpy(value, self.columns[name]["dtype"]) for name, value in batch.items()}
            if max_rows is not None and seen + len(next(iter(table.values()))) > max_rows:
                table = {name: values[: max_rows - seen] for name, values in table.items()}
            seen += len(next(iter(table.values())))
            yield table
            if max_rows is not None and seen >= max_rows:
                return

    def head(self, max_rows: int | None = None, batch_size: int = 1024) -> dict[str, np.ndarray]:
        """The first `max_rows` rows (all by default) as one column table."""
        parts = list(self.tables(batch_size, max_rows))
        if not parts:
            return {
                name: np.zeros((0,), np.float32 if spec["dtype"] == "float" else object)
                for name, spec in self.columns.items()
            }
        return {name: np.concatenate([part[name] for part in parts]) for name in self.columns}


def _to_numpy(value, dtype: str) -> np.ndarray:
    array = value.numpy()
    if dtype == "float":
        return array.astype(np.float32)
    return array.astype(object)


# ---------------------------------------------------------------------------
# Reading a prepared folder (`data.source: tfrecord`)


@SOURCES.register("tfrecord")
def load_tfrecord(data, modalities, tasks, seed: int, base_dir: Path, where: str = "data") -> dict[str, RecordSplit]:
    """The splits of the prepared folder `data.path`, as streaming `RecordSplit`s (nothing is read yet)."""
    folder = Path(data.path)
    if not folder.is_absolute():
        folder = base_dir / folder
    schema = read_schema(folder, f"{where}.path")
    columns = schema["columns"]
    wanted = [(f"modalities.{name}.columns", c) for name, m in modalities.items() for c in m.columns]
    wanted += [(f"tasks.{name}.label", task.label) for name, task in tasks.items()]
    wanted += [(f"tasks.{name}.group", task.group) for name, task in tasks.items() if task.group]
    for where, column in wanted:
        if column not in columns:
            raise DataError(
                where, f"column '{column}' is not in the TFRecords of {folder}", f"they have: {', '.join(columns)}"
            )
    check_kinds(columns, modalities, tasks, folder)
    needed = {column for _, column in wanted}
    splits = {}
    for split in SPLIT_NAMES:
        entry = schema["splits"].get(split, {"files": [], "rows": 0})
        files = shard_files(folder, split, entry)
        splits[split] = RecordSplit(
            split,
            files,
            entry["rows"],
            {name: spec for name, spec in columns.items() if name in needed},
            data.read_parallelism,
            schema.get("tasks"),
            data.on_bad_record == "skip",
        )
    return splits


load_tfrecord.returns_splits = True


def column_kinds(config) -> dict[str, dict]:
    """Per configured column, its kind and record dtype."""
    columns: dict[str, dict] = {}
    for modality in config.modalities.values():
        dtype = "float" if cell_kind(modality.type) == "number" else "bytes"
        for column in modality.columns:
            columns[column] = {"kind": modality.type, "dtype": dtype}
    for task in config.tasks.values():
        dtype = "float" if task.type == "regression" else "bytes"
        columns.setdefault(task.label, {"kind": "label", "dtype": dtype})
        if task.group:  # (ranking within groups: the evaluation reads it beside the label)
            columns.setdefault(task.group, {"kind": "label", "dtype": "bytes"})
    return columns


def prepare(config, out: str | Path, shards: int = 4) -> Path:
    """Convert the configured source's splits into sharded TFRecords plus `schema.json` under `out`.

    The folder appears only when complete (written beside it, then renamed);
    an existing non-empty `out` is refused.

    Returns:
        The folder.
    """
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise UserError("--shards", f"expected a positive integer, got {shards!r}", "e.g. --shards 4")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError("--out", f"'{out}' already exists and is not empty", "choose a new folder or remove it")
    splits = load_splits(config)
    if any(isinstance(split, RecordSplit) for split in splits.values()):
        raise UserError("data.source", "the data is already TFRecords", "prepare reads a csv or demo source")
    columns = column_kinds(config)
    staging = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        schema_splits = {}
        for split, table in splits.items():
            rows = len(next(iter(table.values())))
            files = write_shards(table, columns, staging, split, shards)
            sizes = [(staging / name).stat().st_size for name in files]
            schema_splits[split] = {"files": files, "rows": rows, "sizes": sizes}
        # Classes and label counts over the training split, as training would find them.
        tasks = {}
        for name, task in config.tasks.items():
            settings = task_settings(config, task)
            task_type = get_task_type(task.type, spec=settings)
            classes = task.classes or task_type.infer_classes(splits["train"][task.label], config.data.label_separator)
            labelled = {}
            for split, table in splits.items():
                if task_type.reads_vocabulary:  # (a language model: its classes are the vocabulary adapt learns)
                    labelled[split] = int(sum(bool(text.split()) for text in as_strings(table[task.label])))
                    continue
                _, mask = task_type.encode(
                    table[task.label], list(classes), f"tasks.{name}.label", config.data.label_separator
                )
                if "text_column" in settings:  # a token task: one tag per word, checked before any shard is kept
                    task_type.check_aligned(table, table[task.label], settings["text_column"], name, task.label)
                labelled[split] = labelled_rows(mask)
            tasks[name] = {"label": task.label, "type": task.type, "classes": list(classes), "labelled": labelled}
        schema = {
            "format": SCHEMA_FORMAT,
            "version": SCHEMA_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "source": {
                "type": config.data.source,
                "path": config.data.path,
                **{key: getattr(config.data, key) for key in SPLIT_NAMES if getattr(config.data, key)},  # split files
                "seed": config.seed,
            },
            "label_separator": config.data.label_separator,
            "columns": columns,
            "splits": schema_splits,
            "tasks": tasks,
        }
        (staging / SCHEMA_FILE).write_text(json.dumps(schema, indent=1), encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.rename(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def write_shards(table: dict[str, np.ndarray], columns: dict[str, dict], folder: Path, split: str, shards: int):
    """Write a column table as `shards` TFRecord files, row i into shard i mod `shards`; return the file names."""
    import tensorflow as tf

    rows = len(next(iter(table.values())))
    count = max(1, min(shards, rows))
    names = [f"{split}-{i:05d}-of-{count:05d}.tfrecord" for i in range(count)]
    values = {name: _column_values(table[name], spec, name) for name, spec in columns.items()}
    writers = [tf.io.TFRecordWriter(str(folder / name)) for name in names]
    try:
        for row in range(rows):
            feature = {}
            for name, spec in columns.items():
                value = values[name][row]
                if spec["dtype"] == "float":
                    feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
                else:
                    feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
            writers[row % count].write(
                tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
            )
    finally:
        for writer in writers:
            writer.close()
    return names


def _column_values(values: np.ndarray, spec: dict, column: str) -> list:
    """A column as record values: floats (NaN = missing), file bytes as they are, else UTF-8 strings."""
    if spec["dtype"] == "float":
        return [_float(v, column, row) for row, v in enumerate(values)]
    if cell_kind(spec["kind"]) == "file":
        return [b"" if v is None else bytes(v) for v in values]
    return [s.encode("utf-8") for s in as_strings(values)]


def _float(value, column: str, row: int) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(
            f"column '{column}'", f"expected a number, got {value!r} (row {row})", "fix the value"
        ) from None
