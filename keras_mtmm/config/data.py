"""The `data` block of a config (`DataConfig`), and the config file's paths made relative to its folder."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The keys of a data block that name files or folders (a path, or a glob of CSV files).
DATA_PATH_KEYS = ("path", "train", "validation", "test")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


@dataclass
class DataConfig:
    """Where the raw examples come from and how they are split and streamed.

    - `source: demo` generates the built-in demo data; `source: csv` reads
      `path` (image paths in the CSV are relative to the CSV's folder);
      `source: tfrecord` streams the sharded TFRecords of the folder `path`,
      written by `mtmm prepare` (its splits are the prepared ones).
    - Splits, one of three forms: `path` cut at random into
      `validation_fraction` / `test_fraction` (stratified by a task's labels
      with `stratify: <task>`); `path` + `split_column` (a column whose cells
      say `train`, `validation` or `test`); or CSV files `train`,
      `validation`, `test` (a file or a glob each; `validation` and `test`
      optional). A missing validation split is cut from train by
      `validation_fraction` (stratified too); a missing test split means no
      test metrics.
    - Paths in a config file are relative to the config file's folder; paths
      given with `--set` to the working folder.
    - `adapt_rows`: the Preprocessor learns vocabularies and statistics from
      at most this many training rows (the first ones), so huge data never
      loads whole.
    - `read_parallelism`: TFRecord shard files read at once.
    - `on_bad_record`: `error` (stop, naming the file and row) or `skip` (leave
      the record out and count it in the run summary) for an unreadable image.
    - `max_file_bytes`: the largest image file a CSV cell may name (32 MiB);
      an image must also be a regular file and declare at most 40 million
      pixels.
    - When tasks have their own data (`tasks.<t>.data`), `mixing` says how a
      training step draws from the datasets: `joint` (every batch mixes
      examples of all datasets) or `interleaved` (every batch comes from one
      dataset); `sampler` gives the probabilities: `proportional` (to size),
      `uniform`, `temperature` (p ∝ n^(1/temperature)) or `annealed`
      (proportional at the first epoch to uniform at the last).
    """

    source: str = "demo"
    path: str | None = None
    train: str | None = None
    validation: str | None = None
    test: str | None = None
    split_column: str | None = None
    stratify: str | None = None
    num_examples: int = 4000
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    label_separator: str = "|"
    adapt_rows: int = 100000
    read_parallelism: int = 16
    on_bad_record: str = "error"
    max_file_bytes: int = 32 << 20
    mixing: str = "joint"
    sampler: str = "proportional"
    temperature: float = 2.0


def config_relative_paths(raw: dict[str, Any], folder: str | Path) -> dict[str, Any]:
    """`raw` (parsed YAML, in place) with every relative path it names made absolute against `folder`.

    The paths: `data.path/train/validation/test`, the same keys of every
    `tasks.<t>.data`, and every local `modalities.<m>.encoder.handle` (URL
    handles stay). `training.output_dir` and `export.dir` stay relative to the
    working folder (where `train.py` writes by default). Values that are not
    strings are left for the type checks to name.
    """
    folder = Path(folder).absolute()
    blocks = [raw.get("data")]
    tasks = raw.get("tasks")
    if isinstance(tasks, dict):
        blocks += [task.get("data") for task in tasks.values() if isinstance(task, dict)]
    for block in blocks:
        if isinstance(block, dict):
            for key in DATA_PATH_KEYS:
                if key in block:
                    block[key] = _against(block[key], folder)
    modalities = raw.get("modalities")
    if isinstance(modalities, dict):
        for modality in modalities.values():
            encoder = modality.get("encoder") if isinstance(modality, dict) else None
            if isinstance(encoder, dict) and "handle" in encoder and not _URL.match(str(encoder["handle"])):
                encoder["handle"] = _against(encoder["handle"], folder)
    return raw


def _against(value, folder: Path):
    if not isinstance(value, str) or not value:
        return value
    path = Path(value).expanduser()
    return value if path.is_absolute() else os.path.normpath(folder / path)


def absolute_data_paths(config) -> None:
    """Make the data paths of `config` (and of its tasks' own data) absolute against the working folder,
    in place, so that the resolved config finds the data from any folder."""
    blocks = [config.data] + [task.data for task in config.tasks.values() if task.data is not None]
    for block in blocks:
        for key in DATA_PATH_KEYS:
            if getattr(block, key):
                setattr(block, key, str(Path(getattr(block, key)).resolve()))
