"""Reading one Parquet file into a `Table`, with the CSV source's column semantics (through pyarrow).

- Numeric columns: any number or bool type (NaN and nulls: missing), or
  strings parsed as the CSV source parses cells.
- Image columns: binary cells are the encoded image itself (a first-class
  way to ship a dataset: one file, no folder of images); string cells are
  paths relative to the Parquet file's folder. Either is checked as the
  CSV's image files are (decodable, at most 40 million pixels); a null or
  empty cell is a missing image.
- Label, categorical and text columns: strings (null: ""), integers and
  bools as their text (`3`, `True`), floats as numbers (a regression label).
- Rows are known by their 0-based index in the file; messages also name the
  row group and the row inside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_mtmm.data.columns import cell_kind, column_kinds, column_positions, table_of_cells
from keras_mtmm.data.table import Table
from keras_mtmm.errors import DataError

SUFFIXES = (".parquet", ".pq", ".parq")


def read_parquet_table(path: Path, data, modalities, tasks, key: str = "data.path", extra_columns=()) -> Table:
    """One Parquet file as a `Table` of the configured columns (and `extra_columns`, as strings)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        file = pq.ParquetFile(path)
    except OSError as error:
        raise DataError(key, f"cannot open Parquet '{path}' ({error.strerror or error})", "check the path") from None
    except pa.ArrowException as error:
        raise DataError(str(path), f"is not a readable Parquet file ({error})", "rewrite it (pandas)") from None
    header = list(file.schema_arrow.names)
    kinds = column_kinds(modalities, tasks, extra_columns)
    column_positions(path, header, kinds, "the Parquet file")
    try:
        table = file.read(columns=list(kinds))
    except (pa.ArrowException, OSError) as error:
        raise DataError(str(path), f"cannot read the Parquet file ({error})", "rewrite it (pyarrow, pandas)") from None
    if table.num_rows == 0:
        raise DataError(str(path), "the Parquet file has no rows", "add rows")
    groups = np.cumsum([0] + [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)])[:-1]
    source = str(path)

    def where(row: int) -> str:
        return Table.place(source, "index", row, groups)

    cells = {name: _cells(table.column(name), name, kind, path) for name, kind in kinds.items()}
    return table_of_cells(
        cells,
        kinds,
        data,
        where,
        path.parent,
        np.arange(table.num_rows, dtype=np.int64),
        sources=(source,),
        row_ids="index",
        row_groups={source: groups},
        header=header,
    )


def _cells(column, name: str, kind: str, path: Path):
    """One column's cells as `table_of_cells` takes them."""
    import pyarrow as pa
    import pyarrow.types as types

    if types.is_dictionary(column.type):  # pandas categoricals
        column = column.cast(column.type.value_type)
    kind_of = column.type
    cells = cell_kind(kind)
    fractional = types.is_floating(kind_of) or types.is_decimal(kind_of)
    if fractional or types.is_integer(kind_of) or types.is_boolean(kind_of):
        if cells == "number" or (cells == "label" and fractional):
            values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
            return np.where(column.is_null().to_numpy(zero_copy_only=False), np.nan, values).astype(np.float64)
        if cells in ("label", "text"):
            return ["" if value is None else str(value) for value in column.to_pylist()]
    elif types.is_string(kind_of) or types.is_large_string(kind_of):
        return ["" if value is None else value.strip() for value in column.to_pylist()]
    elif (types.is_binary(kind_of) or types.is_large_binary(kind_of)) and cells == "file":
        return [b"" if value is None else bytes(value) for value in column.to_pylist()]
    raise DataError(
        f"{path}: column '{name}'",
        f"holds {kind_of} values, which a {kind} column cannot read",
        f"store {kind} bytes or paths" if cells == "file" else "store numbers or strings",
    )
