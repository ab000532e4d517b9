"""Reading one CSV file into a `Table`: pyarrow's C++ reader where the file is plain, Python's csv module
for everything else, with the same cells, line numbers and messages either way.

The file must be UTF-8 (a BOM is fine), have a header row naming each
configured column once, and hold cells of at most `MAX_CELL_BYTES` (1 MiB).
Rows whose cells are all blank are skipped; each kept row remembers its
last physical line (the header is line 1), which every message names.
The fast path (`keras_mtmm.data.csv_fast`) hands any file it is not sure
to read exactly as the csv module does (odd quoting, a non-UTF-8 byte, a
cell that is not a number, an infinite number, ...) to the Python path,
which says what is wrong and where.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from keras_mtmm.data.columns import column_kinds, column_positions, table_of_cells
from keras_mtmm.data.csv_fast import read_cells
from keras_mtmm.data.table import Table
from keras_mtmm.errors import DataError

# The largest CSV cell read (Python's csv module stops at its field limit): images and audio live in files.
MAX_CELL_BYTES = 1 << 20
csv.field_size_limit(MAX_CELL_BYTES)


def read_csv_table(
    path: Path, data, modalities, tasks, key: str = "data.path", extra_columns=(), fast: bool = True
) -> Table:
    """One CSV file as a `Table` of the configured columns (and `extra_columns`, as strings).

    `key` names the config key (or flag) that gave the path, for a file that
    cannot be opened. The table's `header` is the file's header row. `fast`:
    try the columnar reader first (False: the Python path only, for tests).
    """
    path = Path(path)
    kinds = column_kinds(modalities, tasks, extra_columns)
    parsed = read_cells(path, kinds, MAX_CELL_BYTES) if fast else None
    header, lines, cells = parsed if parsed is not None else _read_cells_python(path, kinds, key)
    return table_of_cells(
        cells,
        kinds,
        data,
        lambda row: f"{path}:{lines[row]}",
        path.parent,
        np.asarray(lines, dtype=np.int64),
        sources=(str(path),),
        header=header,
    )


def _read_cells_python(path: Path, kinds: dict[str, str], key: str) -> tuple[list[str], list[int], dict]:
    """`(header, lines, {column: stripped cells})` read with the csv module; any problem is a DataError."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")  # -sig: tolerate a BOM (Excel)
    except OSError as error:
        raise DataError(key, f"cannot open CSV '{path}' ({error.strerror})", "check the path") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if not header:
                raise DataError(str(path), "the CSV is empty (no header row)", "write a header row naming the columns")
            header = [name.strip() for name in header]
            rows = [(reader.line_num, row) for row in reader]  # line_num: the row's last physical line
        except UnicodeDecodeError as error:
            raise DataError(
                f"{path}:{reader.line_num + 1}",
                f"is not UTF-8 text (byte {error.start} of a block: {error.reason})",
                "save the CSV as UTF-8",
            ) from None
        except csv.Error as error:
            too_big = "field larger than field limit" in str(error)
            raise DataError(
                f"{path}:{reader.line_num}",
                f"a cell is larger than {MAX_CELL_BYTES:,} bytes" if too_big else f"cannot parse the CSV ({error})",
                "keep big content (images, audio) in files the cell names" if too_big else "fix the quoting",
            ) from None
    positions = column_positions(path, header, kinds)
    kept: list[tuple[int, list[str]]] = []
    for line, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(
                f"{path}:{line}", f"expected {len(header)} cells, got {len(row)}", "fix the row's commas/quotes"
            )
        kept.append((line, row))
    if not kept:
        raise DataError(str(path), "the CSV has a header but no data rows", "add rows")
    cells = {name: [row[positions[name]].strip() for _, row in kept] for name in kinds}
    return header, [line for line, _ in kept], cells
