"""From a file's cells to a `Table`: the column checks and cell parsing the CSV and Parquet sources share.

A reader (CSV or Parquet) hands over, for each configured column, its cells
(strings, or numbers it has already parsed, or file bytes) and a function
that says where row `i` is (`"d.csv:62"`); `table_of_cells` parses numbers,
reads and checks files (images, WAVs: each modality type's own reader),
leaves out bad records (`data.on_bad_record: skip`) and keeps each row's
place in its file. How a column's cells are read is its modality type's
`cells` ("number", "file" or "text"; `cell_kind`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from keras_mtmm.data.images import MAX_FILE_BYTES, BadFile
from keras_mtmm.data.table import Table
from keras_mtmm.errors import DataError
from keras_mtmm.registry import MODALITY_TYPES


def cell_kind(kind: str) -> str:
    """How the cells of a column of `kind` (a modality type, or "label") are read: "number", "file", "text",
    or "label" (a label column: text, or numbers for a regression)."""
    if kind in MODALITY_TYPES:
        return MODALITY_TYPES.get(kind).cells
    return "label" if kind == "label" else "text"


def column_kinds(modalities, tasks, extra_columns=()) -> dict[str, str]:
    """`{column: kind}` of every configured column: a modality type, or `"label"` (labels and `extra_columns`)."""
    kinds: dict[str, str] = {}
    for modality in modalities.values():
        for column in modality.columns:
            kinds[column] = modality.type
    for task in tasks.values():
        kinds.setdefault(task.label, "label")
        if getattr(task, "group", None):  # (a TaskConfig; the Preprocessor's task dicts have none)
            kinds.setdefault(task.group, "label")
    for column in extra_columns:
        kinds.setdefault(column, "label")
    return kinds


def column_positions(path: Path, header: list[str], kinds: dict[str, str], what: str = "the CSV") -> dict[str, int]:
    """Each configured column's position in `header`; a column named twice or not at all is a DataError."""
    duplicated = sorted({name for name in header if header.count(name) > 1 and name in kinds})
    if duplicated:
        raise DataError(
            f"{path}: column '{duplicated[0]}'",
            f"appears {header.count(duplicated[0])} times in the header",
            "give each column its own name",
        )
    missing = [column for column in kinds if column not in header]
    if missing:
        raise DataError(
            f"{path}: column '{missing[0]}'", f"is configured but not in {what}", f"{what} has: {', '.join(header)}"
        )
    return {name: header.index(name) for name in kinds}


def table_of_cells(
    cells: dict[str, object],
    kinds: dict[str, str],
    data,
    where: Callable[[int], str],
    folder: Path,
    rows: np.ndarray,
    **fields,
) -> Table:
    """The `Table` of a file's cells (`{column: cells}`, in `kinds`' columns), row `i` being at `where(i)`.

    Numeric cells are strings to parse or numbers already parsed (NaN:
    missing); image cells are paths relative to `folder` or encoded bytes;
    other cells are kept as they are. A record with a bad cell stops the read,
    or with `data.on_bad_record: skip` is left out whole and counted.
    `fields` are the `Table`'s other fields (`sources`, `row_format`, ...).
    """
    table: dict[str, np.ndarray] = {}
    bad_rows: dict[int, str] = {}  # row index -> why it is skipped (its first bad cell)
    for name, kind in kinds.items():
        values = cells[name]
        if cell_kind(kind) == "number":
            table[name] = numeric_column(values, name, where, folder)
            for index in non_finite_rows(table[name]):
                error = non_finite_error(where(index), name, values[index])
                if data.on_bad_record != "skip":
                    raise error
                bad_rows.setdefault(int(index), str(error))
        elif cell_kind(kind) == "file":
            contents = []
            for index, cell in enumerate(values):
                try:
                    contents.append(
                        file_cell(kind, cell, folder, f"{where(index)}: column '{name}'", data.max_file_bytes)
                    )
                except BadFile as error:
                    if data.on_bad_record != "skip":
                        raise
                    bad_rows.setdefault(index, str(error))
                    contents.append(b"")
            table[name] = np.asarray(contents, dtype=object)
        else:
            table[name] = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    if bad_rows:  # a record with a bad cell is left out whole
        keep = np.asarray([i not in bad_rows for i in range(len(rows))])
        if not keep.any():
            where_all = fields.get("sources", ("the data",))[0]
            raise DataError(where_all, "every data row was skipped as a bad record", "fix the bad cells")
        table = {name: values[keep] for name, values in table.items()}
        rows = rows[keep]
    return Table(table, skipped=[bad_rows[index] for index in sorted(bad_rows)], rows=rows, **fields)


def file_cell(kind: str, cell, folder: Path, where: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The checked bytes of a "file" cell of modality type `kind`: the file it names (relative to `folder`),
    or the bytes themselves (a Parquet binary cell); empty: b"" (missing)."""
    modality = MODALITY_TYPES.get(kind)()
    if isinstance(cell, bytes):
        return modality.check_bytes(cell, where, "the cell's bytes") if cell else b""
    return modality.read_file(cell, folder, where, max_bytes)


def numeric_column(cells, column: str, where: Callable[[int], str], folder: Path) -> np.ndarray:
    """A numeric column as float32 (empty cells: NaN); strings are parsed in one NumPy call, the first bad
    cell being a DataError. Cells that are not finite float32 numbers (``inf``, ``1e39``) become ±inf here;
    `non_finite_rows` finds them."""
    if isinstance(cells, np.ndarray) and cells.dtype.kind == "f":
        values = cells
    else:
        try:
            values = np.asarray([cell or "nan" for cell in cells], dtype=np.float64)
        except ValueError:  # the first bad cell is named; what Python reads and NumPy does not (1_000) is kept
            values = np.asarray(
                [parse_cell(cell, "numeric", column, where(i), folder) for i, cell in enumerate(cells)],
                dtype=np.float64,
            )
    with np.errstate(over="ignore"):
        return values.astype(np.float32, copy=False)


def non_finite_rows(values: np.ndarray) -> np.ndarray:
    """Indices of the rows of a numeric column (or [N, k] block) holding ±inf; NaN is a missing value, not bad."""
    values = np.asarray(values)
    bad = np.isinf(values if values.dtype.kind == "f" else values.astype(np.float64))
    if bad.ndim > 1:
        bad = bad.any(axis=tuple(range(1, bad.ndim)))
    return np.flatnonzero(bad)


def non_finite_error(where: str, column: str, cell) -> DataError:
    """The error for a numeric cell that is not finite: the cell's text (a CSV) or number (quoted as `inf`)."""
    if isinstance(cell, np.generic):
        cell = cell.item()
    return DataError(
        f"{where}: column '{column}'",
        f"{cell!r} is not a finite number (float32 holds magnitudes up to 3.4e38)",
        "fix the cell, leave it empty for a missing value, or set data.on_bad_record: skip",
    )


def parse_cell(cell: str, kind: str, column: str, where: str, folder: Path):
    """One text cell as its column's kind reads it: a number (NaN when empty), checked file bytes, or text."""
    if cell_kind(kind) == "number":
        if not cell:
            return math.nan
        try:
            return float(cell)
        except ValueError:
            raise DataError(
                f"{where}: column '{column}'",
                f"expected a number, got {cell!r}",
                "fix the cell or leave it empty for a missing value",
            ) from None
    if cell_kind(kind) == "file":
        return file_cell(kind, cell, folder, f"{where}: column '{column}'")
    return cell
