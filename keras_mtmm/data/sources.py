"""Data sources (`data.source`): each returns one column table for the whole dataset.

- `demo`: the built-in synthetic catalogue (`keras_mtmm.data.demo`), generated
  on the fly from `data.num_examples` and the experiment seed.
- `alerts`: generated alert sounds (WAV bytes) with captions
  (`keras_mtmm.data.tones.generate_alerts`), at the first audio modality's
  sample rate and duration; `configs/audio_text.yaml`.
- `impressions`: generated recommendation impressions (clicks, conversions,
  ratings; `keras_mtmm.data.impressions`); `configs/recsys_esmm.yaml`.
- `sentences`: generated sentences with BIO entity tags and a sentiment
  (`keras_mtmm.data.sentences`); `configs/nlp_multitask.yaml`.
- `memory`: a table the Python API passes in (`train(config, data=frame)`:
  a pandas DataFrame or a dict of equal-length NumPy arrays / lists);
  nothing is read from disk.
- `csv`: a CSV file with a header (`keras_mtmm.data.csv_reader`); image
  cells are paths relative to the CSV's folder (read as encoded bytes),
  numeric cells are parsed as numbers, empty cells are missing values (or
  "unlabelled" in label columns). The file must be UTF-8 (a BOM is fine), a
  cell at most 1 MiB, each configured column named once in the header; a
  numeric cell that is not a finite float32 number (`inf`, `1e39`) is a bad
  record.
- `parquet`: a Parquet file (`keras_mtmm.data.parquet`), the same columns
  read the same way; image cells may also hold the image bytes themselves.

Whatever the source says, a file named `*.parquet` (`.pq`, `.parq`) is read as
Parquet and a `*.csv` file as CSV: `data.path`, the split files and
`evaluate.py --data` alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_mtmm.data.csv_reader import read_csv_table
from keras_mtmm.data.demo import generate_demo
from keras_mtmm.data.impressions import generate_impressions
from keras_mtmm.data.parquet import SUFFIXES, read_parquet_table
from keras_mtmm.data.sentences import generate_sentences
from keras_mtmm.data.table import Table
from keras_mtmm.data.tones import generate_alerts
from keras_mtmm.errors import DataError
from keras_mtmm.registry import SOURCES

FILE_SOURCES = ("csv", "parquet")


@SOURCES.register("demo")
def load_demo(data, modalities, tasks, seed: int, base_dir: Path, where: str = "data") -> dict[str, np.ndarray]:
    """The built-in demo table (`data.num_examples` rows, deterministic in `seed`)."""
    image_sizes = {tuple(m.image_size) for m in modalities.values() if m.type == "image"}
    side = max((max(size) for size in image_sizes), default=32)
    return generate_demo(data.num_examples, seed=seed, image_size=max(side, 16))


@SOURCES.register("alerts")
def load_alerts(data, modalities, tasks, seed: int, base_dir: Path, where: str = "data") -> dict[str, np.ndarray]:
    """The generated alerts table (`data.num_examples` rows, deterministic in `seed`)."""
    audio = [m.get() for m in modalities.values() if m.type == "audio"]
    rate, seconds = (audio[0].sample_rate, audio[0].duration_s) if audio else (8000, 0.5)
    return generate_alerts(data.num_examples, seed=seed, sample_rate=rate, duration_s=seconds)


@SOURCES.register("impressions")
def load_impressions(data, modalities, tasks, seed: int, base_dir: Path, where: str = "data") -> dict[str, np.ndarray]:
    """The generated impressions table (`data.num_examples` rows, deterministic in `seed`)."""
    return generate_impressions(data.num_examples, seed=seed)


@SOURCES.register("sentences")
def load_sentences(data, modalities, tasks, seed: int, base_dir: Path, where: str = "data") -> dict[str, np.ndarray]:
    """The generated sentences table (`data.num_examples` rows, deterministic in `seed`)."""
    return generate_sentences(data.num_examples, seed=seed)


@SOURCES.register("csv")
@SOURCES.register("parquet")
def load_file_source(data, modalities, tasks, seed: int, base_dir: Path, where: str = "data") -> Table:
    """Read `data.path` (relative to `base_dir` unless absolute) into a column table.

    `where`: the config key of the data block (`data`, or a task's `tasks.<t>.data`), for its errors.
    """
    path = Path(data.path)
    if not path.is_absolute():
        path = base_dir / path
    extra = [data.split_column] if getattr(data, "split_column", None) else []
    return read_table_file(path, data, modalities, tasks, f"{where}.path", extra)


def file_format(path: Path, source: str = "csv") -> str:
    """`parquet` or `csv`: by the file's extension, else by `data.source`."""
    suffix = Path(path).suffix.lower()
    if suffix in SUFFIXES:
        return "parquet"
    if suffix == ".csv":
        return "csv"
    return source if source in FILE_SOURCES else "csv"


def read_table_file(path: Path, data, modalities, tasks, key: str = "data.path", extra_columns=()) -> Table:
    """One data file (CSV or Parquet, see `file_format`) as a `Table` of the configured columns."""
    if file_format(path, data.source) == "parquet":
        return read_parquet_table(path, data, modalities, tasks, key, extra_columns)

    return read_csv_table(path, data, modalities, tasks, key, extra_columns)


@SOURCES.register("memory")
def load_memory(data, modalities, tasks, seed: int, base_dir: Path, where: str = "data") -> dict[str, np.ndarray]:
    """`data.source: memory` has nothing to load by itself: the table comes from the Python API."""
    raise DataError(
        "data.source",
        "memory data is passed in from Python (train(config, data=table)) and is not saved with the run",
        "call keras_mtmm.training.run.train(config, data=...), or point the config at a csv/tfrecord source",
    )


def table_from_memory(data) -> dict[str, np.ndarray]:
    """A column table from a pandas DataFrame or a mapping of equal-length columns (arrays or lists).

    Numeric columns stay float32 (NaN = missing); everything else becomes an
    object array (image columns hold encoded bytes, b"" = missing).
    """
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):  # a pandas DataFrame, without importing pandas
        data = {str(name): data[name].to_numpy() for name in data.columns}
    if not isinstance(data, dict) or not data:
        raise DataError("data", f"expected a DataFrame or a dict of columns, got {type(data).__name__}", "pass one")
    table, rows = {}, None
    for name, values in data.items():
        array = np.asarray(values)
        if array.ndim != 1:
            raise DataError(f"data['{name}']", f"expected one value per row, got shape {array.shape}", "flatten it")
        if rows is not None and len(array) != rows:
            raise DataError(
                f"data['{name}']", f"has {len(array)} rows, the others {rows}", "give every column the same rows"
            )
        rows = len(array)
        kind = array.dtype.kind
        table[str(name)] = array.astype(np.float32) if kind in "fiub" else array.astype(object)
    # Users count a DataFrame's or list's rows from 0, as Python does.
    return Table(table, rows=np.arange(rows, dtype=np.int64), row_format="the memory data, row {}")
