"""What a run checks and learns before it trains: writable folders, the same data on resume, the adapted inputs."""

from __future__ import annotations

import os
from pathlib import Path

from keras_mtmm.data import fingerprint
from keras_mtmm.data.manifest import split_manifest
from keras_mtmm.data.tables import StreamSplit, as_table, num_rows
from keras_mtmm.errors import ConfigError, DataError
from keras_mtmm.run_folder import RunFolder
from keras_mtmm.tasks.base import labelled_rows


def check_writable_folder(folder: str | Path, flag: str) -> None:
    """A folder the run will write into must be a directory it can create or write: found now, not after
    training. Nothing is created here (a run that fails on its data leaves no folder behind)."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == folder else f"is inside '{existing}', which is a file"
        raise ConfigError(flag, f"'{folder}' {where}, not a folder", "pass a folder (it is created if missing)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            flag, f"cannot write into '{existing}' (permission denied or read-only)", "pick a writable folder"
        )


def check_same_data(shared: RunFolder, run: RunFolder, splits, resuming: bool, source: str = "data") -> None:
    """A resumed run must see the data it started with; a fresh one records what it trains on: the
    data's fingerprint, and which source rows went to which split (the split manifest; `source`
    names data that is not read from files). `shared` is the chief's folder, `run` this process's."""
    current = fingerprint.fingerprint(splits)
    stored = shared.read_json(RunFolder.FINGERPRINT) if resuming else None
    changes = fingerprint.differences(stored, current) if isinstance(stored, dict) else []
    if changes:
        raise DataError(
            "--output-dir",
            f"{shared.path} holds an interrupted run on other data ({'; '.join(changes)}), which would be resumed",
            "rerun on the same data to resume, or pass another --output-dir"
            f" (or delete {shared / RunFolder.BACKUP} to start over there)",
        )
    run.write_json(RunFolder.FINGERPRINT, current)
    run.write_json(RunFolder.MANIFEST, split_manifest(splits, source), compact=True)


def adapt_preprocessor(preprocessor, config, train_split, folder) -> dict[str, int]:
    """Adapt on (at most `data.adapt_rows` of) the training split; return the labelled count per task.

    For streamed TFRecords the classes and counts come from their schema
    (the whole split), so a class missing from the adapt sample is still
    known. With several datasets (a `StreamSplit`) the sample takes up to
    `adapt_rows` rows of each.
    """
    parts = list(train_split.parts.values()) if isinstance(train_split, StreamSplit) else [train_split]
    # Each part's sample is read once (a streamed part costs a pass over its first rows).
    samples = [as_table(part, config.data.adapt_rows) for part in parts]
    schema_entries = [
        {} if isinstance(part, dict) else {(e["label"], e["type"]): e for e in part.tasks.values()} for part in parts
    ]
    for spec in preprocessor.tasks.values():
        for entries in schema_entries:
            entry = entries.get((spec["label"], spec["type"]))
            if entry is not None and spec["classes"] is None and entry["classes"]:
                spec["classes"] = list(entry["classes"])
    preprocessor.adapt(samples[0] if len(samples) == 1 else StreamSplit(dict(enumerate(samples))).head(), folder)
    counts = dict.fromkeys(preprocessor.tasks, 0)
    for part, sample, entries in zip(parts, samples, schema_entries):
        # Every label of an in-memory part is checked here, before anything runs; of a streamed part, the sample's.
        _, masks = preprocessor.encode_labels(part if isinstance(part, dict) else sample)
        for task, spec in preprocessor.tasks.items():
            entry = entries.get((spec["label"], spec["type"]))
            counts[task] += int(entry["labelled"]["train"]) if entry is not None else labelled_rows(masks[task])
    for task, count in counts.items():
        if count == 0:
            raise DataError(
                f"tasks.{task}.label",
                f"column '{preprocessor.tasks[task]['label']}' has no labelled row in the training split",
                "label some rows (an empty cell means unlabelled) or remove the task",
            )
    return counts


def check_labels(preprocessor, splits) -> None:
    """Every label of the in-memory validation and test splits is a known class, checked before training.

    (The train split's are checked when the preprocessor learns the classes; a streamed split's
    labels are checked as they are read.)
    """
    for split in ("validation", "test"):
        parts = splits[split].parts.values() if isinstance(splits[split], StreamSplit) else [splits[split]]
        for part in parts:
            if isinstance(part, dict) and num_rows(part) > 0:
                preprocessor.encode_labels(part)
