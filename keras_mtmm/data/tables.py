"""Column tables: loading a configured source, splitting it, and picking model inputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from keras_mtmm.data.values import as_strings
from keras_mtmm.errors import DataError
from keras_mtmm.registries import SOURCES

SPLITS = ("train", "validation", "test")


def load_splits(config, base_dir: str | Path = ".") -> dict:
    """Load the configured source and split it deterministically (by `config.seed`).

    Returns:
        `{"train": split, "validation": split, "test": split}`: column tables
        (dicts of NumPy arrays) for in-memory sources, streaming
        `RecordSplit`s for `tfrecord` (use `iter_tables` / `as_table` to read
        either the same way).
    """
    source = SOURCES.get(config.data.source, "data.source")
    if getattr(source, "returns_splits", False):
        return Splits(source(config.data, config.modalities, config.tasks, config.seed, Path(base_dir)))
    table = source(config.data, config.modalities, config.tasks, config.seed, Path(base_dir))
    check_columns(table, config, config.data.source)
    splits = split_table(table, config.data.validation_fraction, config.data.test_fraction, config.seed)
    return Splits(splits, skipped=getattr(table, "skipped", []))


class Splits(dict):
    """`{split: table}`, plus the source records left out as bad (`data.on_bad_record: skip`)."""

    def __init__(self, splits: dict, skipped: list[str] | None = None):
        super().__init__(splits)
        self.skipped = list(skipped or [])


def check_columns(table: dict[str, np.ndarray], config, source_name: str) -> None:
    """Every configured column must be in the table; the error lists what is there."""
    wanted = [(f"modalities.{name}.columns", column) for name, m in config.modalities.items() for column in m.columns]
    wanted += [(f"tasks.{name}.label", task.label) for name, task in config.tasks.items()]
    for where, column in wanted:
        if column not in table:
            raise DataError(where, f"column '{column}' is not in the {source_name} data", f"it has: {', '.join(table)}")


def split_table(
    table: dict[str, np.ndarray], validation_fraction: float, test_fraction: float, seed: int
) -> dict[str, dict[str, np.ndarray]]:
    """Shuffle rows with `seed` and cut them into train / validation / test."""
    num_rows = len(next(iter(table.values())))
    order = np.random.default_rng(seed).permutation(num_rows)
    num_test = int(round(num_rows * test_fraction))
    num_validation = int(round(num_rows * validation_fraction))
    parts = {
        "test": order[:num_test],
        "validation": order[num_test : num_test + num_validation],
        "train": order[num_test + num_validation :],
    }
    if len(parts["train"]) == 0:
        raise DataError(
            "data", f"the train split is empty ({num_rows} rows)", "add rows or lower the validation/test fractions"
        )
    return {split: {name: values[rows] for name, values in table.items()} for split, rows in parts.items()}


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
        yield {name: values[start : start + batch_size] for name, values in split.items()}


def as_table(split, max_rows: int | None = None) -> dict[str, np.ndarray]:
    """The first `max_rows` rows (all by default) of a column table or a streaming split, in memory."""
    if not isinstance(split, dict):
        return split.head(max_rows)
    if max_rows is None or num_rows(split) <= max_rows:
        return split
    return {name: values[:max_rows] for name, values in split.items()}


def modality_inputs(table: dict[str, np.ndarray], modalities) -> dict[str, np.ndarray]:
    """The raw serving inputs, one array per modality (the export's input contract).

    image/text: object arrays [N] of bytes/str; numeric: float32 [N, k] (NaN =
    missing); categorical: object [N, k] of str ("" = missing).
    """
    inputs = {}
    for name, modality in modalities.items():
        columns = modality.columns
        if modality.type == "image":
            inputs[name] = np.array([b"" if v is None else bytes(v) for v in table[columns[0]]], dtype=object)
        elif modality.type == "text":
            inputs[name] = as_strings(table[columns[0]])
        elif modality.type == "numeric":
            inputs[name] = np.stack([_numeric(table[c], c) for c in columns], axis=1).astype(np.float32)
        else:
            inputs[name] = np.stack([as_strings(table[c]) for c in columns], axis=1)
    return inputs


def _numeric(values: np.ndarray, column: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError(
            f"column '{column}'", "holds values that are not numbers", "fix the column or make it categorical"
        ) from None
