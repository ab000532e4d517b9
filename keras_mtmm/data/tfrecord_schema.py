"""The `schema.json` of a prepared TFRecord folder: reading it, and checking it and the shards it names.

A hand-edited, truncated or foreign folder fails here with a `DataError`
naming the file: the schema's structure and types, shard names that are
plain file names inside the folder (never a path that leaves it), each
shard's size against the one `mtmm prepare` recorded, and each configured
column's kind and dtype against the config.
"""

from __future__ import annotations

import json
from pathlib import Path

from keras_mtmm.data.columns import cell_kind
from keras_mtmm.errors import DataError

SCHEMA_FILE = "schema.json"
SCHEMA_FORMAT = "keras_mtmm.tfrecord"
SCHEMA_VERSION = 1


def read_schema(folder: str | Path, key: str = "data.path") -> dict:
    """The schema of a prepared folder; a `DataError` (naming config key `key`) if it is missing or not ours."""
    path = Path(folder) / SCHEMA_FILE
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise DataError(
            key, f"'{folder}' has no {SCHEMA_FILE}", f"point {key} at a folder written by `mtmm prepare`"
        ) from None
    except json.JSONDecodeError as error:
        raise DataError(str(path), f"not valid JSON ({error.msg})", "re-run `mtmm prepare`") from None
    if not isinstance(schema, dict) or schema.get("format") != SCHEMA_FORMAT or schema.get("version") != SCHEMA_VERSION:
        found = (
            schema if not isinstance(schema, dict) else f"{schema.get('format')!r} version {schema.get('version')!r}"
        )
        raise DataError(
            str(path),
            f"unknown schema format {found}",
            "re-run `mtmm prepare` with this version of keras_mtmm",
        )
    check_schema(schema, path)
    return schema


def check_schema(schema: dict, path: Path) -> None:
    """The parts of `schema.json` the reader relies on, with their types: a hand-edited file fails here, named."""

    def bad(what: str):
        return DataError(str(path), what, "re-run `mtmm prepare` (do not edit schema.json by hand)")

    if not isinstance(schema.get("columns"), dict) or not schema["columns"]:
        raise bad("has no 'columns' mapping")
    for name, spec in schema["columns"].items():
        if not isinstance(spec, dict) or spec.get("dtype") not in ("bytes", "float") or "kind" not in spec:
            raise bad(f"column '{name}' has no valid kind and dtype")
    if not isinstance(schema.get("splits"), dict) or "train" not in schema["splits"]:
        raise bad("has no 'splits' mapping with a train split")
    for split, entry in schema["splits"].items():
        files, rows = (entry.get("files"), entry.get("rows")) if isinstance(entry, dict) else (None, None)
        if not isinstance(files, list) or isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise bad(f"split '{split}' needs a list of 'files' and a whole number of 'rows'")
        for name in files:
            # A shard is a plain file name inside the folder: never a path that leaves it.
            if not isinstance(name, str) or not name or Path(name).name != name or name.startswith("."):
                raise bad(f"split '{split}' names a shard {name!r} outside the folder")
        sizes = entry.get("sizes")
        if sizes is not None and (not isinstance(sizes, list) or len(sizes) != len(files)):
            raise bad(f"split '{split}' has {len(files)} files but sizes for another number")


def shard_files(folder: Path, split: str, entry: dict) -> list[str]:
    """The split's shard paths, each a regular file of the size the schema records (when it records one)."""
    files = []
    sizes = entry.get("sizes") or [None] * len(entry["files"])
    for name, size in zip(entry["files"], sizes):
        path = folder / name
        if path.is_symlink() or not path.is_file():
            raise DataError(str(folder), f"shard '{name}' of the {split} split is missing", "re-run `mtmm prepare`")
        actual = path.stat().st_size
        if size is not None and actual != size:
            raise DataError(
                str(path),
                f"has {actual:,} bytes, but `mtmm prepare` wrote {size:,} (truncated, emptied or replaced)",
                "re-run `mtmm prepare`",
            )
        if actual == 0 and entry["rows"] > 0:
            raise DataError(str(path), "is empty, but its split has rows", "re-run `mtmm prepare`")
        files.append(str(path))
    return files


def check_kinds(columns: dict, modalities, tasks, folder: Path) -> None:
    """Each configured column must have the kind the config gives it (shards of another config fail here)."""
    wanted = {
        column: (modality.type, "float" if cell_kind(modality.type) == "number" else "bytes")
        for modality in modalities.values()
        for column in modality.columns
    }
    for task in tasks.values():
        wanted.setdefault(task.label, ("label", "float" if task.type == "regression" else "bytes"))
        if task.group:
            wanted.setdefault(task.group, ("label", "bytes"))
    for column, expected in wanted.items():
        recorded = (columns[column].get("kind"), columns[column].get("dtype"))
        if recorded != expected:
            raise DataError(
                f"{folder}: column '{column}'",
                f"was prepared as {recorded[0]} ({recorded[1]}), but the config reads it as {expected[0]} "
                f"({expected[1]}): shards of another config?",
                "re-run `mtmm prepare` with this config",
            )


# ---------------------------------------------------------------------------
# Writing (`mtmm prepare`)
