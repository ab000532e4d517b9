"""Reading `mtmm predict`'s input files (CSV, JSON lines) into rows, parsed as the CSV data source parses cells."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from keras_mtmm.data.columns import cell_kind
from keras_mtmm.data.columns import parse_cell as _parse_cell
from keras_mtmm.data.images import BadFile
from keras_mtmm.errors import DataError, UserError


@dataclass(frozen=True)
class InputRow:
    """One data row of the input: where it is (`file:line`), its parsed model columns and its id."""

    where: str
    values: dict
    identifier: object


def read_csv_rows(path: Path, columns: dict[str, str], id_column: str | None) -> Iterator[InputRow]:
    """The data rows of a CSV with a header, parsed as the CSV data source parses them (blank rows skipped)."""
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}:1", "the CSV is empty (no header row)", "write a header row naming the columns")
        header = [name.strip() for name in header]
        wanted = [*columns, *([id_column] if id_column else [])]
        for column in wanted:
            if column not in header:
                needed = "is the --id-column" if column == id_column else "is a model input"
                raise DataError(f"{path}:1: column '{column}'", f"{needed} but not in the header", _has(header))
        positions = {name: header.index(name) for name in wanted}
        for row in reader:
            if not row or (len(row) == 1 < len(header) and not row[0].strip()):
                continue  # a blank line; a row of empty cells is a row with every input missing, and is scored
            where = f"{path}:{reader.line_num}"  # line_num: the row's last physical line
            if len(row) != len(header):
                raise DataError(where, f"expected {len(header)} cells, got {len(row)}", "fix the row's commas/quotes")
            values = {
                name: _image_errors(_parse_cell, row[positions[name]].strip(), kind, name, where, path.parent)
                for name, kind in columns.items()
            }
            yield InputRow(where, values, row[positions[id_column]].strip() if id_column else None)


def read_jsonl_rows(path: Path, columns: dict[str, str], id_column: str | None) -> Iterator[InputRow]:
    """The rows of a JSON-lines file: one object per line keyed by column; a missing key is a missing value."""
    with _open_text(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(where, f"not valid JSON ({error.msg})", "write one JSON object per line") from None
            if not isinstance(record, dict):
                raise DataError(
                    where, f"expected a JSON object, got {type(record).__name__}", "write one object per line"
                )
            if id_column and id_column not in record:
                raise DataError(f"{where}: column '{id_column}'", "the --id-column is missing", _has(record))
            values = {
                name: _image_errors(_json_value, record.get(name), kind, name, where, path.parent)
                for name, kind in columns.items()
            }
            yield InputRow(where, values, record.get(id_column) if id_column else None)


def _json_value(value, kind: str, column: str, where: str, folder: Path):
    """A JSON value as the CSV source would parse its cell (numbers may be JSON numbers or strings)."""
    at = f"{where}: column '{column}'"
    cells = cell_kind(kind)
    if isinstance(value, (dict, list)) or (cells == "number" and isinstance(value, bool)):
        expected = {"number": "a number", "file": f"an {kind} path"}.get(cells, "a string")
        raise DataError(at, f"expected {expected}, got {json.dumps(value)[:80]}", "fix the value or leave it out")
    if value is None:
        return _parse_cell("", kind, column, where, folder)
    if cells == "number" and isinstance(value, (int, float)):
        return float(value)
    if cells == "file" and not isinstance(value, str):
        raise DataError(at, f"expected an {kind} path, got {json.dumps(value)}", "give the path as a string")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 3.0 reads like the CSV cell "3"
    return _parse_cell(str(value).strip(), kind, column, where, folder)


def _image_errors(parse, value, kind: str, column: str, where: str, folder: Path):
    """`parse(...)`, with the image errors' fix hint worded for scoring (no data.on_bad_record here)."""
    try:
        return parse(value, kind, column, where, folder)
    except BadFile as error:
        fix = "fix or remove the file (paths are relative to the input file)"
        raise DataError(error.where, error.what, fix) from None


def _open_text(path: Path):
    try:
        return path.open(newline="", encoding="utf-8-sig")  # -sig: tolerate a BOM (Excel)
    except OSError as error:
        raise UserError("--input", f"cannot open '{path}' ({error.strerror})", "check the path") from None


def _has(names: Iterable[str]) -> str:
    return f"the file has: {', '.join(names) or 'no columns'}"


def count_rows(path: Path, input_format: str) -> int:
    """The data rows of an input file (a quick pass without parsing values), for the progress bar."""
    with _open_text(path) as handle:
        if input_format == "jsonl":
            return sum(1 for line in handle if line.strip())
        reader = csv.reader(handle)
        rows = sum(1 for row in reader if row and (len(row) > 1 or row[0].strip()))  # as read_csv_rows counts
    return max(rows - 1, 0)  # the header
