"""Validation of a `data` block (the top-level one, or a task's own): the source, the split form, the limits."""

from __future__ import annotations

from typing import Any

from keras_mtmm.errors import ConfigError, did_you_mean

SPLIT_FILE_KEYS = ("train", "validation", "test")


def validate_data(data, where: str, registries: Any, tasks: dict) -> None:
    """Check one data block; `tasks` are the tasks it labels (`data.stratify` names one of them)."""
    registries.SOURCES.get(data.source, f"{where}.source")
    _validate_split_form(data, where)
    if data.source in ("csv", "parquet", "tfrecord") and not data.path and not data.train:
        files = f", or {where}.train/validation/test to split files" if data.source != "tfrecord" else ""
        what = {"csv": "the CSV file", "parquet": "the Parquet file"}.get(
            data.source, "the folder written by `mtmm prepare`"
        )
        raise ConfigError(
            f"{where}.path", f"{where}.source is {data.source} but no path is set", f"set {where}.path to {what}{files}"
        )
    if data.num_examples < 10:
        raise ConfigError(f"{where}.num_examples", f"expected at least 10, got {data.num_examples}", "raise it")
    for key in ("validation_fraction", "test_fraction"):
        fraction = getattr(data, key)
        if not 0.0 <= fraction < 0.5:
            raise ConfigError(f"{where}.{key}", f"expected a fraction in [0, 0.5), got {fraction}", "e.g. 0.1")
    _validate_stratify(data, where, tasks)
    for key in ("adapt_rows", "read_parallelism", "max_file_bytes"):
        if getattr(data, key) < 1:
            raise ConfigError(
                f"{where}.{key}", f"expected a positive integer, got {getattr(data, key)}", "set it to 1 or more"
            )
    if data.on_bad_record not in ("error", "skip"):
        raise ConfigError(
            f"{where}.on_bad_record", f"expected error or skip, got {data.on_bad_record!r}", "use error or skip"
        )


def _validate_split_form(data, where: str) -> None:
    """One split form: `path` (+ fractions or `split_column`), or the files `train` [+ `validation`, `test`]."""
    files = [key for key in SPLIT_FILE_KEYS if getattr(data, key) is not None]
    for key in files:
        if not getattr(data, key):
            raise ConfigError(f"{where}.{key}", "is empty", f"name a data file (or a glob), or remove {where}.{key}")
    if files and data.source not in ("csv", "parquet"):
        raise ConfigError(
            f"{where}.{files[0]}",
            f"split files are read from csv or parquet data, not {data.source}",
            "set data.source: csv or parquet (`mtmm prepare` keeps the splits of the config it converts)",
        )
    if files and "train" not in files:
        raise ConfigError(
            f"{where}.{files[0]}", f"names a split file, but {where}.train is not set", f"set {where}.train too"
        )
    if files and data.path:
        raise ConfigError(
            f"{where}.train",
            f"both {where}.path and split files are set",
            f"use {where}.path (split by fractions or {where}.split_column) or {where}.train/validation/test",
        )
    if data.split_column is not None:
        if not data.split_column:
            raise ConfigError(f"{where}.split_column", "is empty", "name the column that says each row's split")
        if files:
            raise ConfigError(
                f"{where}.split_column",
                "split files are already split",
                f"remove {where}.split_column, or use {where}.path with it",
            )
        if data.source in ("demo", "alerts", "impressions", "sentences", "tfrecord"):
            raise ConfigError(
                f"{where}.split_column",
                f"{data.source} data has no split column",
                "use it with csv, parquet or memory data",
            )


def _validate_stratify(data, where: str, tasks: dict) -> None:
    if data.stratify is None:
        return
    key = f"{where}.stratify"
    if data.stratify not in tasks:
        hint = did_you_mean(data.stratify, tasks) or f"tasks of this data: {', '.join(tasks) or 'none'}"
        raise ConfigError(key, f"no task named {data.stratify!r} labels this data", hint)
    if tasks[data.stratify].type == "regression":
        raise ConfigError(
            key,
            f"task '{data.stratify}' is a regression task: its values have no classes to stratify by",
            "name a classification task",
        )
    if data.source == "tfrecord":
        raise ConfigError(
            key, "TFRecords keep the splits they were prepared with", f"remove {key} (set it when preparing)"
        )
    if data.train and data.validation:
        raise ConfigError(
            key,
            "nothing is split at random: the train and validation splits are files",
            f"remove {key} (it applies to random cuts: data.path's fractions, or a validation split cut from train)",
        )
