"""A fingerprint of the data a run trains on, so that a run resumes only on the data it started with.

A run folder records the fingerprint (`RunFolder.FINGERPRINT`) when it starts; a rerun into the
same folder that would resume its checkpoint first compares the fingerprint
of the data it has loaded now, and refuses on a difference (naming the split
and what changed) instead of resuming silently on other rows.

What is hashed (SHA-256), per split (train, validation, test):

- an in-memory table (CSV, demo, memory data): every column's values, in
  order: the numbers' bytes, and each text / image cell's bytes (so an image
  file whose pixels changed counts, as its bytes are in the table);
- a streamed TFRecord split: each shard's name, size, and its first and last
  1 MiB (a changed record in the middle of a big shard of the same size is
  not seen: the price of not reading every shard at every start);
- a split of several datasets: each of its parts, as above.

Row counts come with each split. Hashing a 140,000 × 100 numeric table
takes about 0.1 s.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from keras_mtmm.data.tables import num_rows

BLOCK = 1 << 20


def fingerprint(splits) -> dict[str, dict]:
    """`{split: {"rows": n, "sha256": hex}}` for `load_splits`' splits."""
    return {name: _split(split) for name, split in splits.items()}


def differences(stored: dict, current: dict) -> list[str]:
    """What changed between two fingerprints, one phrase per split (empty: the same data)."""
    changes = []
    for name in sorted(set(stored) | set(current)):
        before, now = stored.get(name), current.get(name)
        if before == now:
            continue
        if before is None or now is None:
            changes.append(f"the {name} split {'appeared' if before is None else 'is gone'}")
        elif before.get("rows") != now.get("rows"):
            changes.append(f"the {name} split has {now.get('rows')} rows, not {before.get('rows')}")
        else:
            changes.append(f"the {name} split's values differ")
    return changes


def _split(split) -> dict:
    digest = hashlib.sha256()
    _feed(digest, split)
    return {"rows": int(num_rows(split)), "sha256": digest.hexdigest()}


def _feed(digest, split) -> None:
    parts = getattr(split, "parts", None)
    if parts is not None:  # several datasets
        for stream in sorted(parts):
            digest.update(f"part {stream}\n".encode())
            _feed(digest, parts[stream])
        return
    files = getattr(split, "files", None)
    if files is not None:  # streamed TFRecord shards
        for name in files:
            _feed_file(digest, Path(name))
        return
    for column in sorted(split):
        digest.update(f"column {column}\n".encode())
        _feed_column(digest, np.asarray(split[column]))


def _feed_column(digest, values: np.ndarray) -> None:
    if values.dtype != object:
        digest.update(str(values.dtype).encode())
        digest.update(np.ascontiguousarray(values).tobytes())
        return
    for cell in values:
        data = cell if isinstance(cell, bytes) else str(cell).encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)


def _feed_file(digest, path: Path) -> None:
    size = path.stat().st_size
    digest.update(f"file {path.name} {size}\n".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(BLOCK))
        if size > BLOCK:
            handle.seek(max(BLOCK, size - BLOCK))
            digest.update(handle.read(BLOCK))
