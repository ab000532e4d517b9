"""`Table`: a column table that knows where each of its rows came from (file and line, or row index)."""

from __future__ import annotations

import numpy as np


class Table(dict):
    """A column table that also says which source records were skipped and where each row came from.

    Args:
        columns: column name -> one value per row.
        skipped: why each left-out source record was skipped (`data.on_bad_record: skip`).
        rows: each row's place in its source, as a number (a CSV line, a Parquet or memory row index).
        row_format: how `where` writes that place for data not read from files, e.g. `"the memory data, row {}"`.
        split: the split the rows were cut into, when they were.
        sources: the files the rows came from (none for memory or demo data).
        row_source: with several `sources`, each row's file (an index into `sources`).
        row_ids: what `rows` count: `"line"` (1-based CSV lines, the header is line 1) or
            `"index"` (0-based row indices: Parquet files, memory tables).
        row_groups: for Parquet files, `{file: the index of each row group's first row}`.
        header: a file's header row (a CSV's first line, a Parquet file's column names).
    """

    def __init__(
        self,
        columns: dict[str, np.ndarray],
        skipped: list[str] | None = None,
        rows: np.ndarray | None = None,
        row_format: str = "",
        split: str = "",
        sources: tuple[str, ...] = (),
        row_source: np.ndarray | None = None,
        row_ids: str | None = None,
        row_groups: dict[str, np.ndarray] | None = None,
        header: list[str] | None = None,
    ):
        super().__init__(columns)
        self.skipped = list(skipped or [])
        self.rows = rows
        self.row_format = row_format
        self.split = split
        self.sources = tuple(sources)
        self.row_source = row_source
        self.row_ids = row_ids or ("line" if self.sources else "index")
        self.row_groups = dict(row_groups or {})
        self.header = header

    @staticmethod
    def place(source: str, row_ids: str, row: int, groups: np.ndarray | None = None) -> str:
        """How a message names row `row` of file `source`: `"d.csv:62"` (a line), or
        `"d.parquet: row index 1041 (row group 1, row 17 in it)"` (0-based)."""
        if row_ids == "line":
            return f"{source}:{row}"
        if groups is None or len(groups) < 2:
            return f"{source}: row index {row}"
        group = int(np.searchsorted(groups, row, side="right")) - 1
        return f"{source}: row index {row} (row group {group}, row {row - int(groups[group])} in it)"

    def where(self, row: int) -> str | None:
        """Row `row`'s place in the source (`"d.csv:62"`), or None where it is not known."""
        if self.rows is None:
            return None
        if self.sources:
            source = self.sources[0 if self.row_source is None else int(self.row_source[row])]
            return self.place(source, self.row_ids, int(self.rows[row]), self.row_groups.get(source))
        if not self.row_format:
            return None
        return self.row_format.format(int(self.rows[row]))

    def row_files(self) -> np.ndarray | None:
        """Each row's source file (str), or None for data that is not read from files."""
        if not self.sources or self.rows is None:
            return None
        if self.row_source is None:
            return np.full(len(self.rows), self.sources[0])  # (dtype=str would keep one character)
        return np.asarray(self.sources, dtype=str)[self.row_source]

    def take(self, rows: np.ndarray, split: str = "") -> Table:
        """The table of the given rows (indices), keeping where each came from."""
        return Table(
            {name: values[rows] for name, values in self.items()},
            rows=None if self.rows is None else self.rows[rows],
            row_format=self.row_format,
            split=split or self.split,
            sources=self.sources,
            row_source=None if self.row_source is None else self.row_source[rows],
            row_ids=self.row_ids,
            row_groups=self.row_groups,
        )

    @staticmethod
    def concat(tables: list[Table], split: str = "") -> Table:
        """The rows of `tables` (files with the same columns, all CSV or all Parquet) one after the other."""
        if len(tables) == 1:
            table = tables[0].take(slice(None), split)
            table.skipped = list(tables[0].skipped)
            return table
        sources = tuple(source for table in tables for source in table.sources)
        row_source = np.concatenate([np.full(len(t.rows), i, dtype=np.int64) for i, t in enumerate(tables)])
        return Table(
            {name: np.concatenate([table[name] for table in tables]) for name in tables[0]},
            skipped=[reason for table in tables for reason in table.skipped],
            rows=np.concatenate([table.rows for table in tables]),
            split=split,
            sources=sources,
            row_source=row_source,
            row_ids=tables[0].row_ids,
            row_groups={source: groups for table in tables for source, groups in table.row_groups.items()},
        )
