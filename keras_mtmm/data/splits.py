"""Cutting a table into train / validation / test: at random (optionally stratified), by a split column,
or as the split files a dataset comes with.

Every form is deterministic in the experiment seed. A random cut of `n` rows
gives `round(n * test_fraction)` test rows and `round(n * validation_fraction)`
validation rows, stratified or not; stratified by a task (`data.stratify`),
each of its label values (an unlabelled row counts as one more value) gets
its share of every split to within one row.
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np

from keras_mtmm.cells import as_strings
from keras_mtmm.data.sources import read_table_file
from keras_mtmm.data.table import Table
from keras_mtmm.errors import DataError, did_you_mean

SPLITS = ("train", "validation", "test")


def split_table(
    table: dict[str, np.ndarray],
    validation_fraction: float,
    test_fraction: float,
    seed: int,
    strata: np.ndarray | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Shuffle rows with `seed` and cut them into train / validation / test (stratified by `strata`, one
    value per row, when given)."""
    num_rows = len(next(iter(table.values())))
    order = np.random.default_rng(seed).permutation(num_rows)
    num_test = int(round(num_rows * test_fraction))
    num_validation = int(round(num_rows * validation_fraction))
    if strata is None:
        parts = {
            "test": order[:num_test],
            "validation": order[num_test : num_test + num_validation],
            "train": order[num_test + num_validation :],
        }
    else:
        test, rest = _stratified_cut(order, strata, num_test)
        validation, train = _stratified_cut(rest, strata, num_validation)
        parts = {"test": test, "validation": validation, "train": train}
    if len(parts["train"]) == 0:
        raise DataError(
            "data", f"the train split is empty ({num_rows} rows)", "add rows or lower the validation/test fractions"
        )
    return {split: _take(table, rows, split) for split, rows in parts.items()}


def _stratified_cut(order: np.ndarray, strata: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` rows of `order` spread evenly over the strata (to within one row each), and the others;
    both keep `order`'s (random) order."""
    keys = as_strings(np.asarray(strata)[order]).astype(str)
    by_stratum = np.argsort(keys, kind="stable")  # positions in `order`, grouped by stratum, random inside
    total = len(order)
    positions = np.arange(total)
    # Every total/count-th position of the grouped order: exactly `count`, each stratum its share.
    chosen = (positions + 1) * count // max(total, 1) > positions * count // max(total, 1)
    picked = np.sort(by_stratum[chosen])
    left = np.sort(by_stratum[~chosen])
    return order[picked], order[left]


def split_by_column(
    table: Table, column: str, validation_fraction: float, seed: int, strata: np.ndarray | None, key: str
) -> dict[str, Table]:
    """The splits a column names (`train` / `validation` / `test` in every row); without validation rows,
    the validation split is cut from train by `validation_fraction`."""
    values = as_strings(table[column])
    unknown = np.flatnonzero(~np.isin(values, SPLITS))
    if len(unknown):
        row = int(unknown[0])
        place = table.where(row) if hasattr(table, "where") else None
        value = values[row]
        hint = did_you_mean(value, SPLITS)
        raise DataError(
            f"{place or f'row {row}'}: column '{column}'",
            f"{'is empty' if not value else f'says {value!r}'}: {key} names the column that says each row's split",
            f"write train, validation or test in every row{f'; {hint}' if hint else ''}",
        )
    parts = {split: np.flatnonzero(values == split) for split in SPLITS}
    if len(parts["train"]) == 0:
        raise DataError(f"column '{column}'", "no row says train", "mark the training rows train")
    splits = {split: _take(table, rows, split) for split, rows in parts.items()}
    if len(parts["validation"]) == 0 and validation_fraction > 0:
        train_strata = None if strata is None else np.asarray(strata)[parts["train"]]
        splits["train"], splits["validation"] = cut_validation(splits["train"], validation_fraction, seed, train_strata)
    return splits


def cut_validation(train, validation_fraction: float, seed: int, strata: np.ndarray | None = None):
    """`(train, validation)`: `round(n * validation_fraction)` rows of `train` cut at random (stratified)."""
    cut = split_table(train, validation_fraction, 0.0, seed, strata)
    return cut["train"], cut["validation"]


def _take(table, rows: np.ndarray, split: str):
    if hasattr(table, "take"):  # a source Table: keep where each row came from
        return table.take(rows, split)
    return {name: values[rows] for name, values in table.items()}


def split_files(data, base_dir: Path, key: str, block: str = "data") -> list[Path]:
    """The files a split key names (a path, or a glob), relative to `base_dir` unless absolute; `block` is the
    data block's config key (`data`, or `tasks.<t>.data`), for messages."""
    pattern = Path(getattr(data, key))
    if not pattern.is_absolute():
        pattern = Path(base_dir) / pattern
    if not glob.has_magic(str(pattern)):
        return [pattern]
    files = sorted(Path(name) for name in glob.glob(str(pattern)))
    if not files:
        raise DataError(f"{block}.{key}", f"no file matches '{pattern}'", "check the path or the glob")
    return files


def load_split_files(data, modalities, tasks, seed: int, base_dir: Path, block: str = "data") -> dict[str, Table]:
    """The CSV split files `data.train` [, `data.validation`, `data.test`], each a file or a glob.

    Every file must have the header of the first train file (the same columns, in any order) and at
    least one data row. Without a validation file, the validation split is cut from train by
    `validation_fraction` (stratified by `data.stratify`); without a test file, the test split is empty.
    """
    splits: dict[str, Table] = {}
    first: tuple[Path, list[str]] | None = None
    owners: dict[Path, str] = {}
    for split in SPLITS:
        if getattr(data, split) is None:
            continue
        tables = []
        for path in split_files(data, base_dir, split, block):
            owner = owners.setdefault(path.resolve(), split)
            if owner != split:
                raise DataError(
                    f"{block}.{split}", f"'{path}' is also in {block}.{owner}", "give each split its own files"
                )
            table = read_table_file(path, data, modalities, tasks, f"{block}.{split}")
            if first is None:
                first = (path, table.header)
            else:
                _check_same_header(path, table.header, *first, f"{block}.{split}")
            tables.append(table)
        splits[split] = Table.concat(tables, split)
    if "validation" not in splits:
        strata = stratify_labels(splits["train"], data, tasks)
        splits["train"], splits["validation"] = cut_validation(splits["train"], data.validation_fraction, seed, strata)
    if "test" not in splits:
        splits["test"] = splits["train"].take(np.arange(0), "test")
    return {split: splits[split] for split in SPLITS}


def _check_same_header(path: Path, header: list[str], first: Path, first_header: list[str], split: str) -> None:
    missing = [name for name in first_header if name not in header]
    extra = [name for name in header if name not in first_header]
    if missing or extra:
        what = f"has no column '{missing[0]}'" if missing else f"has a column '{extra[0]}'"
        raise DataError(
            f"{path} ({split})",
            f"its header differs from the first split file's: it {what}, '{first}' {'has' if missing else 'has not'}",
            "give every split file the same columns (in any order)",
        )


def stratify_labels(table, data, tasks) -> np.ndarray | None:
    """The label cells of the task `data.stratify` names (one stratum per value), or None."""
    if data.stratify is None or data.stratify not in tasks:
        return None
    return as_strings(table[tasks[data.stratify].label])


def split_source_table(table, data, tasks, seed: int, block: str = "data") -> dict:
    """A source's one table cut into splits: by `data.split_column`, or at random by the fractions."""
    strata = stratify_labels(table, data, tasks)
    if data.split_column:
        if data.split_column not in table:
            raise DataError(
                f"{block}.split_column",
                f"column '{data.split_column}' is not in the data",
                f"it has: {', '.join(table)}",
            )
        return split_by_column(
            table, data.split_column, data.validation_fraction, seed, strata, f"{block}.split_column"
        )
    return split_table(table, data.validation_fraction, data.test_fraction, seed, strata)


def no_test_reason(data) -> str:
    """Why a stream has no test rows, for the one line training prints."""
    if data.train:
        return "data.test is not set"
    if data.split_column:
        return f"no row of column '{data.split_column}' says test"
    return "data.test_fraction is 0"
