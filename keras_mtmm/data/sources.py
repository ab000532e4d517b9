"""Data sources (`data.source`): each returns one column table for the whole dataset.

- `demo`: the built-in synthetic catalogue (`keras_mtmm.data.demo`), generated
  on the fly from `data.num_examples` and the experiment seed.
- `memory`: a table the Python API passes in (`train(config, data=frame)`:
  a pandas DataFrame or a dict of equal-length NumPy arrays / lists);
  nothing is read from disk.
- `csv`: a CSV file with a header; image cells are paths relative to the
  CSV's folder (read as encoded bytes), numeric cells are parsed as numbers,
  empty cells are missing values (or "unlabelled" in label columns). The
  file must be UTF-8 (a BOM is fine), a cell at most `MAX_CELL_BYTES`
  (1 MiB), each configured column named once in the header; a numeric cell
  that is not a finite float32 number (`inf`, `1e39`) is a bad record.
"""

from __future__ import annotations

import csv
import math
import stat
import zlib
from pathlib import Path

import numpy as np

from keras_mtmm.data.demo import generate_demo
from keras_mtmm.data.table import Table
from keras_mtmm.errors import DataError
from keras_mtmm.registries import SOURCES

# The largest CSV cell read (Python's csv module stops at its field limit): images and audio live in files.
MAX_CELL_BYTES = 1 << 20
csv.field_size_limit(MAX_CELL_BYTES)
# Image files: the largest file read (`data.max_file_bytes`' default) and the most pixels decoded.
MAX_FILE_BYTES = 32 << 20
MAX_IMAGE_PIXELS = 40_000_000

# Leading bytes of the image formats tf.io.decode_image reads.
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


@SOURCES.register("demo")
def load_demo(data, modalities, tasks, seed: int, base_dir: Path) -> dict[str, np.ndarray]:
    """The built-in demo table (`data.num_examples` rows, deterministic in `seed`)."""
    image_sizes = {tuple(m.image_size) for m in modalities.values() if m.type == "image"}
    side = max((max(size) for size in image_sizes), default=32)
    return generate_demo(data.num_examples, seed=seed, image_size=max(side, 16))


@SOURCES.register("csv")
def load_csv(data, modalities, tasks, seed: int, base_dir: Path) -> dict[str, np.ndarray]:
    """Read `data.path` (relative to `base_dir` unless absolute) into a column table."""
    path = Path(data.path)
    if not path.is_absolute():
        path = base_dir / path
    extra = [data.split_column] if getattr(data, "split_column", None) else []
    return read_csv_table(path, data, modalities, tasks, "data.path", extra)


def read_csv_table(path: Path, data, modalities, tasks, key: str = "data.path", extra_columns=()) -> Table:
    """One CSV file as a `Table` of the configured columns (and `extra_columns`, as strings).

    `key` names the config key (or flag) that gave the path, for a file that
    cannot be opened. The table's `header` is the file's header row.
    """
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
    kinds = _column_kinds(modalities, tasks)
    for column in extra_columns:
        kinds.setdefault(column, "label")
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
            f"{path}: column '{missing[0]}'",
            "is configured but not in the CSV",
            f"the CSV has: {', '.join(header)}",
        )
    positions = {name: header.index(name) for name in kinds}
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
    lines = [line for line, _ in kept]
    table: dict[str, np.ndarray] = {}
    bad_rows: dict[int, str] = {}  # row index -> why it is skipped (its first bad cell)
    for name, kind in kinds.items():
        cells = [row[positions[name]].strip() for _, row in kept]
        if kind == "numeric":
            table[name] = _numeric_column(cells, name, path, lines)
            for index in non_finite_rows(table[name]):
                error = non_finite_error(f"{path}:{lines[index]}", name, cells[index])
                if data.on_bad_record != "skip":
                    raise error
                bad_rows.setdefault(int(index), str(error))
        elif kind == "image":
            images = []
            for index, cell in enumerate(cells):
                try:
                    images.append(
                        read_image_bytes(
                            cell, path.parent, f"{path}:{lines[index]}: column '{name}'", data.max_file_bytes
                        )
                    )
                except BadImage as error:
                    if data.on_bad_record != "skip":
                        raise
                    bad_rows.setdefault(index, str(error))
                    images.append(b"")
            table[name] = np.asarray(images, dtype=object)
        else:
            table[name] = np.asarray(cells, dtype=object)
    if bad_rows:  # a record with a bad cell is left out whole
        keep = np.asarray([i not in bad_rows for i in range(len(kept))])
        if not keep.any():
            raise DataError(str(path), "every data row was skipped as a bad record", "fix the bad cells")
        table = {name: values[keep] for name, values in table.items()}
        lines = [line for line, kept_row in zip(lines, keep) if kept_row]
    return Table(
        table,
        skipped=[bad_rows[index] for index in sorted(bad_rows)],
        rows=np.asarray(lines, dtype=np.int64),
        row_format=str(path).replace("{", "{{").replace("}", "}}") + ":{}",
        sources=(str(path),),
        header=header,
    )


def _numeric_column(cells: list[str], column: str, path: Path, lines: list[int]) -> np.ndarray:
    """A numeric column parsed in one NumPy call (empty cells: NaN); the first bad cell is a DataError.

    Cells that parse but are not finite float32 numbers (``inf``, ``-inf``,
    ``1e39``) are left as ±inf here; `non_finite_rows` finds them.
    """
    try:
        values = np.asarray([cell or "nan" for cell in cells], dtype=np.float64)
    except ValueError:  # the first bad cell is named; what Python reads and NumPy does not (1_000) is kept
        where = [f"{path}:{line}" for line in lines]
        values = np.asarray(
            [_parse_cell(cell, "numeric", column, at, path.parent) for cell, at in zip(cells, where)], dtype=np.float64
        )
    with np.errstate(over="ignore"):
        return values.astype(np.float32)


def non_finite_rows(values: np.ndarray) -> np.ndarray:
    """Indices of the rows of a numeric column (or [N, k] block) holding ±inf; NaN is a missing value, not bad."""
    values = np.asarray(values, dtype=np.float64)
    bad = np.isinf(values)
    if bad.ndim > 1:
        bad = bad.any(axis=tuple(range(1, bad.ndim)))
    return np.flatnonzero(bad)


def non_finite_error(where: str, column: str, cell) -> DataError:
    return DataError(
        f"{where}: column '{column}'",
        f"{cell!r} is not a finite number (float32 holds magnitudes up to 3.4e38)",
        "fix the cell, leave it empty for a missing value, or set data.on_bad_record: skip",
    )


class BadImage(DataError):
    """An image cell names a file that cannot be read or decoded."""


def _column_kinds(modalities, tasks) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for modality in modalities.values():
        for column in modality.columns:
            kinds[column] = modality.type
    for task in tasks.values():
        kinds.setdefault(task.label, "label")
    return kinds


def _parse_cell(cell: str, kind: str, column: str, where: str, folder: Path):
    if kind == "numeric":
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
    if kind == "image":
        return read_image_bytes(cell, folder, f"{where}: column '{column}'")
    return cell


def read_image_bytes(cell: str, folder: Path, where: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """Read an image file named in a CSV cell; an empty cell is a missing image (b"").

    The file must be a regular file (not a FIFO or a device, which could block
    or never end) of at most `max_bytes` (`data.max_file_bytes`), and its
    header must declare at most `MAX_IMAGE_PIXELS` pixels before anything is
    decoded (a small file can declare a huge image).
    """
    if not cell:
        return b""
    image_path = Path(cell)
    if not image_path.is_absolute():
        image_path = folder / image_path
    skip = "or set data.on_bad_record: skip"
    try:
        info = image_path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise BadImage(where, f"'{image_path}' is not a regular file", f"name an image file, {skip}")
        if info.st_size > max_bytes:
            raise BadImage(
                where,
                f"'{image_path}' has {info.st_size:,} bytes, over data.max_file_bytes ({max_bytes:,})",
                f"shrink the image or raise data.max_file_bytes, {skip}",
            )
        content = image_path.read_bytes()
    except OSError as error:
        raise BadImage(
            where,
            f"cannot read image '{image_path}' ({error.strerror})",
            f"fix the path (relative to the CSV), {skip}",
        ) from None
    if not content.startswith(IMAGE_SIGNATURES):
        raise BadImage(where, f"'{image_path}' is not a readable PNG, JPEG, GIF or BMP image", f"replace it, {skip}")
    size = declared_size(content)
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise BadImage(
            where,
            f"'{image_path}' declares {size[0]:,} x {size[1]:,} pixels, over the limit of {MAX_IMAGE_PIXELS:,}",
            f"downscale the image, {skip}",
        )
    if not _decodes(content):
        raise BadImage(
            where,
            f"'{image_path}' is not a readable PNG, JPEG, GIF or BMP image",
            "replace or remove the file, or set data.on_bad_record: skip",
        )
    return content


def declared_size(content: bytes) -> tuple[int, int] | None:
    """(width, height) from an image's header, without decoding it; None where the header does not say."""
    import struct

    try:
        if content.startswith(b"\x89PNG\r\n\x1a\n"):
            if content[12:16] != b"IHDR" or struct.unpack(">I", content[29:33])[0] != zlib.crc32(content[12:29]):
                return None  # not a well-formed header: the decoder check says the file is unreadable
            return struct.unpack(">II", content[16:24])
        if content.startswith((b"GIF87a", b"GIF89a")):
            return struct.unpack("<HH", content[6:10])
        if content.startswith(b"BM"):
            width, height = struct.unpack("<ii", content[18:26])
            return abs(width), abs(height)
        if content.startswith(b"\xff\xd8\xff"):
            import tensorflow as tf

            height, width, _ = (int(v) for v in tf.io.extract_jpeg_shape(content).numpy())
            return width, height
    except (struct.error, ValueError):
        return None
    except Exception:  # a JPEG whose header TensorFlow cannot read: the decoder check says so
        return None
    return None


def _decodes(content: bytes) -> bool:
    """Whether TensorFlow's image decoder (the one training and serving use) reads these bytes."""
    import tensorflow as tf

    try:
        tf.io.decode_image(content, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        return False
    return True


@SOURCES.register("memory")
def load_memory(data, modalities, tasks, seed: int, base_dir: Path) -> dict[str, np.ndarray]:
    """`data.source: memory` has nothing to load by itself: the table comes from the Python API."""
    raise DataError(
        "data.source",
        "memory data is passed in from Python (train(config, data=table)) and is not saved with the run",
        "call keras_mtmm.training.train(config, data=...), or point the config at a csv/tfrecord source",
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
