"""The CSV source's fast path: record boundaries found with NumPy, cells parsed by pyarrow's C++ reader.

`read_cells` returns exactly what the csv-module path
(`keras_mtmm.data.csv_reader`) would, `(header, lines, {column: cells})`,
or None for any file it is not sure to read the same way; the caller then
reads it the slow way, which also words every error. None for: no pyarrow,
a file that cannot be read, a NUL byte, text that is not UTF-8, an odd
number of quotes or a quote away from a cell's edge, a lone carriage
return, a record longer than the cell limit, a blank or missing header, no
data rows, a row pyarrow refuses (a wrong cell count, a cell that is not a
number), a numeric cell that is not finite (its message quotes the text),
or a row count that differs from the records found.

How a record ends: a newline ends a record when an even number of quotes
comes before it (a newline inside quotes is part of a cell). A record is
blank when every cell is empty or whitespace; blank records are skipped (the
csv path does the same) but count towards line numbers.
"""

from __future__ import annotations

import codecs
import csv
import io
import mmap
from pathlib import Path

import numpy as np

from keras_mtmm.data.columns import column_positions

QUOTE, COMMA, NEWLINE, RETURN = 34, 44, 10, 13
# Bytes that can make up a blank record: ASCII whitespace (what str.strip removes) and commas.
_BLANK = np.zeros(256, dtype=bool)
_BLANK[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32, COMMA]] = True
# Bytes of a record that may be blank but needs the csv module to tell (quotes, non-ASCII whitespace).
_MAYBE_BLANK = _BLANK.copy()
_MAYBE_BLANK[QUOTE] = True
_MAYBE_BLANK[128:] = True


def read_cells(path: Path, kinds: dict[str, str], max_cell_bytes: int):
    """`(header, lines, cells)` of the CSV at `path` read by pyarrow, or None (read it the slow way)."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:
        return None
    try:  # mapped, not copied: the bytes are scanned once and handed to pyarrow as they are
        with path.open("rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # not a regular file, or empty: the csv path says what is wrong
        return None
    offset = 3 if mapped[:3] == b"\xef\xbb\xbf" else 0
    content = memoryview(mapped)[offset:]
    buffer = np.frombuffer(mapped, dtype=np.uint8)[offset:]
    if mapped.find(b"\0", offset) != -1 or not _is_utf8(content, buffer):
        return None
    found = _records(buffer, max_cell_bytes)
    if found is None:
        return None
    starts, stops, lines, blank, quoted_newlines = found
    if blank[0]:
        return None  # the csv path says what is wrong with the header
    header = next(csv.reader(io.StringIO(bytes(content[starts[0] : stops[0]]).decode("utf-8"))), [])
    header = [name.strip() for name in header]
    positions = column_positions(path, header, kinds)
    data = np.flatnonzero(~blank[1:]) + 1
    if len(data) == 0:
        return None
    body = _body(content, starts, stops, blank)
    names = [f"c{i}" for i in range(len(header))]
    wanted = {name: names[position] for name, position in positions.items()}
    types = {wanted[name]: pa.float64() if kind == "numeric" else pa.string() for name, kind in kinds.items()}
    try:
        table = pacsv.read_csv(
            pa.py_buffer(body),
            read_options=pacsv.ReadOptions(column_names=names, block_size=4 << 20),
            parse_options=pacsv.ParseOptions(newlines_in_values=quoted_newlines),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                include_columns=sorted(set(wanted.values()), key=names.index),
                null_values=[""],
                strings_can_be_null=False,
                quoted_strings_can_be_null=True,
            ),
        )
    except (pa.ArrowException, ValueError):
        return None
    if table.num_rows != len(data):
        return None
    cells = {}
    for name, kind in kinds.items():
        column = table.column(wanted[name])
        if kind == "numeric":
            with np.errstate(over="ignore"):  # nulls (empty cells) become NaN
                values = column.to_numpy().astype(np.float32)
            if np.isinf(values).any():
                return None  # the csv path quotes the cell's text in its message
            cells[name] = values
        else:
            cells[name] = ["" if cell is None else cell.strip() for cell in column.to_pylist()]
    return header, lines[data], cells


def _is_utf8(content: memoryview, buffer: np.ndarray) -> bool:
    if len(buffer) == 0 or buffer.max() < 128:  # ASCII
        return True
    try:
        codecs.utf_8_decode(content, "strict", True)
    except UnicodeDecodeError:
        return False
    return True


def _records(buffer: np.ndarray, max_cell_bytes: int):
    """`(starts, stops, lines, blank, quoted_newlines)` of every record, or None where the quoting is not
    plain (the csv module and pyarrow could disagree) or a record is longer than `max_cell_bytes`."""
    size = len(buffer)
    quotes = _positions(buffer, QUOTE)
    if len(quotes) % 2:
        return None
    if len(quotes):
        before = np.where(quotes > 0, buffer[np.maximum(quotes - 1, 0)], COMMA)
        after = np.where(quotes < size - 1, buffer[np.minimum(quotes + 1, size - 1)], COMMA)
        at_edge = np.isin(before, (COMMA, NEWLINE, QUOTE)) | np.isin(after, (COMMA, NEWLINE, RETURN, QUOTE))
        if not at_edge.all():
            return None
    returns = _positions(buffer, RETURN)
    if len(returns) and (returns[-1] == size - 1 or (buffer[np.minimum(returns + 1, size - 1)] != NEWLINE).any()):
        return None  # a lone carriage return: the csv module ends a line there
    newlines = _positions(buffer, NEWLINE)
    inside = np.searchsorted(quotes, newlines) % 2 == 1  # an odd number of quotes before: inside a cell
    ends = newlines[~inside]
    starts = np.concatenate([[0], ends + 1])
    stops = np.concatenate([ends, [size]])
    if starts[-1] == size:  # the file ends with a newline: no record after it
        starts, stops = starts[:-1], stops[:-1]
    if len(starts) == 0 or (stops - starts).max() > max_cell_bytes:
        return None
    lines = np.searchsorted(newlines, stops) + 1  # the record's last physical line
    blank = _blank_records(buffer, starts, stops)
    return starts, stops, lines, blank, bool(inside.any())


def _positions(buffer: np.ndarray, value: int, chunk: int = 1 << 22) -> np.ndarray:
    """The positions of `value` in `buffer`, found a few MiB at a time (no file-sized temporaries)."""
    found = [np.flatnonzero(buffer[start : start + chunk] == value) + start for start in range(0, len(buffer), chunk)]
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def _blank_records(buffer: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Which records have only blank cells: whitespace and commas, or (checked by the csv module) quotes
    and non-ASCII whitespace around nothing.

    Records are scanned a byte at a time from their start, all at once, until each shows a byte that
    cannot be blank: most records show one at their first byte, so this costs about one pass over the
    records rather than one over the file.
    """
    blank = np.zeros(len(starts), dtype=bool)
    unsure = np.zeros(len(starts), dtype=bool)  # a quote or a non-ASCII byte: the csv module decides
    pending = np.arange(len(starts))
    offset = 0
    while len(pending) and offset < 64:
        ended = starts[pending] + offset >= stops[pending]
        blank[pending[ended]] = True  # the end, and no byte that cannot be blank
        pending = pending[~ended]
        byte = buffer[starts[pending] + offset]
        unsure[pending[_MAYBE_BLANK[byte] & ~_BLANK[byte]]] = True
        pending = pending[_MAYBE_BLANK[byte]]
        offset += 1
    for index in pending:  # records that start with a long blank run: the rest of each at once
        rest = buffer[starts[index] + offset : stops[index]]
        if _MAYBE_BLANK[rest].all():
            blank[index] = True
            unsure[index] |= not _BLANK[rest].all()
    for index in np.flatnonzero(blank & unsure):
        text = bytes(buffer[starts[index] : stops[index]]).decode("utf-8")
        row = next(csv.reader(io.StringIO(text)), [])
        blank[index] = not any(cell.strip() for cell in row)
    return blank


def _body(content: memoryview, starts: np.ndarray, stops: np.ndarray, blank: np.ndarray) -> bytes | memoryview:
    """The data records (without the header and blank records), one per line, for pyarrow."""
    data = np.flatnonzero(~blank[1:]) + 1
    if data[-1] - data[0] + 1 == len(data):  # no blank record among them: a view of the file
        return content[starts[data[0]] : stops[data[-1]]]
    return b"\n".join(content[starts[i] : stops[i]] for i in data)
