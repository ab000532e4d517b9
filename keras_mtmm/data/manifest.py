"""The split manifest: which source rows went to which split, recorded in every run folder.

The manifest (`RunFolder.MANIFEST`) holds, per split, one entry per source the split's rows
came from:

    {"row_ids": "...what the numbers are...",
     "splits": {"train": [{"source": "/data/items.csv", "row_ids": "line", "rows": [2, 5, ...]}, ...],
                "validation": [...], "test": [...]}}

- `"row_ids": "line"`: the rows are 1-based lines of the CSV file `source`
  (the header is line 1; a row whose quoted cell spans lines counts by the
  line it ends on, as error messages do). Each split file is its own entry.
- `"row_ids": "index"`: 0-based row indices of the Parquet file `source`, of a
  memory table or of the demo data (`source` is `memory` or `demo`).
- A prepared TFRecord split lists its shard files (`"files"`) and row count.
- With several datasets (`tasks.<t>.data`), each entry names its `stream`.

Rows are listed in increasing order. The test predictions in
`evaluation.npz` carry the same ids (`row_ids`, `row_files`), row by row.
"""

from __future__ import annotations

import numpy as np

from keras_mtmm.data.tables import StreamSplit, num_rows

ROW_IDS = (
    "line: 1-based lines of the CSV file named by source (the header is line 1); "
    "index: 0-based row indices of the Parquet file named by source, or of memory or demo data"
)


def split_manifest(splits, source_name: str = "data") -> dict:
    """The manifest of `load_splits`' splits (`source_name`: what rows without files came from)."""
    manifest: dict = {"row_ids": ROW_IDS, "splits": {}}
    for name, split in splits.items():
        parts = split.parts.items() if isinstance(split, StreamSplit) else [(None, split)]
        entries = []
        for stream, part in parts:
            for entry in _entries(part, source_name):
                entries.append({"stream": stream, **entry} if stream is not None else entry)
        manifest["splits"][name] = entries
    return manifest


def _entries(part, source_name: str) -> list[dict]:
    files = getattr(part, "files", None)
    if files is not None:  # a prepared TFRecord split
        return [{"source": "tfrecord", "files": [str(f) for f in files], "rows": int(num_rows(part))}]
    rows = getattr(part, "rows", None)
    if rows is None:
        return [{"source": source_name, "rows": int(num_rows(part))}]
    row_files = part.row_files()
    if row_files is None:
        return [{"source": source_name, "row_ids": part.row_ids, "rows": np.sort(rows).tolist()}]
    entries = []
    for source in part.sources:
        mine = rows[row_files == source]
        entries.append({"source": source, "row_ids": part.row_ids, "rows": np.sort(mine).tolist()})
    return entries


def manifest_rows(manifest: dict, split: str) -> set[tuple[str, int]]:
    """`{(source, row id)}` of one split of a manifest (TFRecord entries have no row ids)."""
    entries = [entry for entry in manifest["splits"][split] if "row_ids" in entry]
    return {(entry["source"], int(row)) for entry in entries for row in entry["rows"]}


def row_ids_of(table) -> tuple[np.ndarray | None, np.ndarray | None]:
    """`(row ids, source files)` of a batch table, as the manifest writes them (None where not known)."""
    rows = getattr(table, "rows", None)
    if rows is None or not hasattr(table, "row_files"):
        return None, None
    return np.asarray(rows, dtype=np.int64), table.row_files()


def join_row_ids(origins: list[tuple]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The `(row ids, files)` of consecutive batches (`row_ids_of` each) as two arrays; None where a batch's
    are not known."""
    joined = []
    for parts in zip(*origins) if origins else ((), ()):
        joined.append(None if not parts or any(p is None for p in parts) else np.concatenate(parts))
    return joined[0], joined[1]
