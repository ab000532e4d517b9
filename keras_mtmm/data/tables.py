"""Column tables: loading a configured source, splitting it, and picking model inputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from keras_mtmm.data.columns import cell_kind, non_finite_error, non_finite_rows
from keras_mtmm.data.sources import read_table_file, table_from_memory
from keras_mtmm.data.splits import SPLITS, load_split_files, split_source_table, split_table  # noqa: F401
from keras_mtmm.data.table import Table
from keras_mtmm.errors import DataError
from keras_mtmm.registry import MODALITY_TYPES, SOURCES


def load_splits(config, base_dir: str | Path = ".", data=None) -> dict:
    """Load the configured data and split it deterministically (by `config.seed`).

    Returns:
        `{"train": split, "validation": split, "test": split}`: column tables
        (dicts of NumPy arrays) for in-memory sources, streaming
        `RecordSplit`s for `tfrecord`, and `StreamSplit`s (one part per
        dataset) when tasks have data of their own. `iter_tables` /
        `as_table` / `num_rows` read all of them the same way.

        `data` (with `data.source: memory`) is the table itself: a pandas
        DataFrame or a dict of columns, split like any other source.
    """
    if data is not None:
        if config.data.source != "memory":
            raise DataError(
                "data.source",
                f"a table was passed in, but the source is {config.data.source}",
                "set data.source: memory",
            )
        table = table_from_memory(data)
        check_columns(table, config, "memory")
        return Splits(split_source_table(table, config.data, config.tasks, config.seed))
    streams = data_streams(config)
    if list(streams) == ["data"]:
        return _load_stream(config, config.data, config.tasks, "data", base_dir)
    loaded = {
        stream: _load_stream(config, data, {t: config.tasks[t] for t in tasks}, stream, base_dir)
        for stream, (data, tasks) in streams.items()
    }
    skipped = [reason for splits in loaded.values() for reason in splits.skipped]
    return Splits(
        {split: StreamSplit({stream: splits[split] for stream, splits in loaded.items()}) for split in SPLITS},
        skipped=skipped,
    )


def load_file(path: str | Path, config) -> Table:
    """Every row of one labelled CSV file (`evaluate.py --data FILE`), with the columns `config` names.

    Image paths in it are relative to the file's folder; rows keep their file and line (for errors,
    and the row ids of the evaluation dump). Every label column must be in the file (an empty cell
    is an unlabelled row).
    """
    # The reader checks every numeric cell (finite float32) and names its file, line and column.
    return read_table_file(Path(path).absolute(), config.data, config.modalities, config.tasks, "--data")


def data_streams(config) -> dict[str, tuple]:
    """`{stream: (data config, [tasks it labels])}`: the top-level data for tasks without data of their own
    (key `"data"`), and one stream per task with `tasks.<t>.data` (key `"tasks.<t>.data"`)."""
    streams: dict[str, tuple] = {}
    shared = [name for name, task in config.tasks.items() if task.data is None]
    if shared:
        streams["data"] = (config.data, shared)
    for name, task in config.tasks.items():
        if task.data is not None:
            streams[f"tasks.{name}.data"] = (task.data, [name])
    return streams


def _load_stream(config, data, tasks, stream: str, base_dir) -> Splits:
    source = SOURCES.get(data.source, f"{stream}.source")
    if getattr(source, "returns_splits", False):
        return Splits(source(data, config.modalities, tasks, config.seed, Path(base_dir), where=stream))
    if data.train:  # the split files a dataset comes with
        splits = load_split_files(data, config.modalities, tasks, config.seed, Path(base_dir), stream)
        return Splits(splits, skipped=[reason for split in splits.values() for reason in split.skipped])
    table = source(data, config.modalities, tasks, config.seed, Path(base_dir), where=stream)
    if not isinstance(table, Table):  # demo data: rows are known by their index
        table = Table(table, rows=np.arange(num_rows(table), dtype=np.int64))
    check_columns(table, config, data.source, tasks)
    splits = split_source_table(table, data, tasks, config.seed, stream)
    return Splits(splits, skipped=getattr(table, "skipped", []))


class StreamSplit:
    """One split (train, validation or test) of several datasets: one part per data stream.

    A part holds only its own tasks' label columns; the others read as unlabelled.
    """

    def __init__(self, parts: dict):
        self.parts = dict(parts)

    def __len__(self) -> int:
        return sum(num_rows(part) for part in self.parts.values())

    def tables(self, batch_size: int = 1024) -> Iterator[dict[str, np.ndarray]]:
        for part in self.parts.values():
            yield from iter_tables(part, batch_size)

    def head(self, max_rows: int | None = None) -> dict[str, np.ndarray]:
        """The parts' first rows (at most `max_rows` from each), as one table; absent label columns are empty."""
        tables = [as_table(part, max_rows) for part in self.parts.values()]
        columns = list(dict.fromkeys(name for table in tables for name in table))
        return {name: np.concatenate([_column_or_missing(table, name, tables) for table in tables]) for name in columns}


class Splits(dict):
    """`{split: table}`, plus the source records left out as bad (`data.on_bad_record: skip`)."""

    def __init__(self, splits: dict, skipped: list[str] | None = None):
        super().__init__(splits)
        self.skipped = list(skipped or [])


def check_columns(table: dict[str, np.ndarray], config, source_name: str, tasks: dict | None = None) -> None:
    """Every configured column (of `tasks`, default all) must be in the table; the error lists what is there."""
    tasks = config.tasks if tasks is None else tasks
    wanted = [(f"modalities.{name}.columns", column) for name, m in config.modalities.items() for column in m.columns]
    wanted += [(f"tasks.{name}.label", task.label) for name, task in tasks.items()]
    for where, column in wanted:
        if column not in table:
            raise DataError(where, f"column '{column}' is not in the {source_name} data", f"it has: {', '.join(table)}")
    check_finite(table, config, source_name)


def check_finite(table: dict[str, np.ndarray], config, source_name: str) -> None:
    """Numeric feature cells must be finite or missing (NaN): ±inf would train a NaN model.

    Tables read from files (CSV, Parquet) were checked cell by cell as they were read
    (`keras_mtmm.data.columns.table_of_cells`); this checks the others (memory, demo).
    """
    if getattr(table, "sources", ()):
        return
    for modality in config.modalities.values():
        if cell_kind(modality.type) != "number":
            continue
        for column in modality.columns:
            try:
                values = np.asarray(table[column], dtype=np.float64)
            except (TypeError, ValueError):
                continue  # not numbers at all: the preprocessing names the column
            rows = non_finite_rows(values)
            if len(rows):
                place = table.where(int(rows[0])) if hasattr(table, "where") else None
                where = place or f"the {source_name} data, row {rows[0]}"
                raise non_finite_error(where, column, float(values[rows[0]]))


def num_rows(table) -> int:
    """The number of rows of a column table or a streaming split."""
    if not isinstance(table, dict):
        return len(table)
    return len(next(iter(table.values()))) if table else 0


def iter_tables(split, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Consecutive rows of a column table or a streaming split, as column tables of up to `batch_size` rows."""
    if not isinstance(split, dict):
        yield from split.tables(batch_size)
        return
    for start in range(0, num_rows(split), batch_size):
        rows = slice(start, start + batch_size)
        yield split.take(rows) if hasattr(split, "take") else {name: values[rows] for name, values in split.items()}


def as_table(split, max_rows: int | None = None) -> dict[str, np.ndarray]:
    """The first `max_rows` rows (all by default) of a column table or a streaming split, in memory."""
    if not isinstance(split, dict):
        return split.head(max_rows)
    if max_rows is None or num_rows(split) <= max_rows:
        return split
    return {name: values[:max_rows] for name, values in split.items()}


def modality_inputs(table: dict[str, np.ndarray], modalities) -> dict[str, np.ndarray]:
    """The raw serving inputs, one array per modality (the export's input contract), as each modality
    type makes them (`table_input`): image/audio: object [N] of bytes; text: object [N] of str; numeric:
    float32 [N, k] (NaN = missing); categorical: object [N, k] of str ("" = missing).
    """
    return {name: MODALITY_TYPES.get(m.type)().table_input(table, m.columns) for name, m in modalities.items()}


def numeric_values(values: np.ndarray, column: str, table=None) -> np.ndarray:
    """A numeric column as float32; a cell that is not a number is a `DataError` at its row's place."""
    try:
        return np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        row = next(i for i, value in enumerate(values) if not _is_number(value))
        place = table.where(row) if hasattr(table, "where") else None
        raise DataError(
            f"{place or f'row {row}'}: column '{column}'",
            f"expected a number, got {values[row]!r}",
            "fix the cell, or make the column categorical",
        ) from None


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _column_or_missing(table: dict[str, np.ndarray], name: str, tables: list[dict]) -> np.ndarray:
    """`table[name]`, or missing values (NaN or "") typed like the other tables' `name`."""
    example = next(t[name] for t in tables if name in t)
    return label_column(table, name, regression=example.dtype.kind == "f")


def label_column(table: dict[str, np.ndarray], column: str, regression: bool) -> np.ndarray:
    """A table's label column; a table without it (another task's dataset) is unlabelled for the task."""
    if column in table:
        return table[column]
    return np.full(num_rows(table), np.nan if regression else "", dtype=np.float32 if regression else object)


def warmup_split(splits):
    """The split whose first rows become the export's warmup requests: validation, else test, else train."""
    for name in ("validation", "test", "train"):
        if num_rows(splits[name]) > 0:
            return splits[name]
    return splits["train"]


def skipped_records(splits, config) -> dict | None:
    """With `data.on_bad_record: skip`: how many source records were left out, and the first few reasons.

    `valid_rows` gives, per split, the records left in its streamed TFRecords
    (one counting pass over them), so Keras knows the epoch's length.
    """
    if config.data.on_bad_record != "skip":
        return None
    reasons = list(getattr(splits, "skipped", []))
    count = len(reasons)
    valid: dict[str, int] = {}
    for name, split in splits.items():
        parts = split.parts.values() if isinstance(split, StreamSplit) else [split]
        for part in parts:
            if not isinstance(part, dict):
                left = sum(1 for _ in part.valid_records())
                valid[name] = valid.get(name, 0) + left
                count += num_rows(part) - left
    return {"count": count, "first": reasons[:10], "valid_rows": valid}
