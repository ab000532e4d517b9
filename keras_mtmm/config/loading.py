"""Loading an experiment config: YAML (paths relative to the file), `--set` overrides, then the checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from keras_mtmm.config.checks import validate_config
from keras_mtmm.config.data import DataConfig, config_relative_paths  # noqa: F401 (DataConfig: part of the API)
from keras_mtmm.config.schema import ExperimentConfig
from keras_mtmm.config.tune import check_tune
from keras_mtmm.config.types import build, deep_copy
from keras_mtmm.config.yaml_reader import MAX_YAML_NODES, load_yaml  # noqa: F401 (MAX_YAML_NODES: part of the API)
from keras_mtmm.errors import ConfigError, did_you_mean
from keras_mtmm.registry import TASK_TYPES


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML experiment config, apply `--set` overrides, validate it.

    Args:
        path: the YAML file.
        overrides: `dotted.key=value` strings; values are parsed as YAML scalars.

    Returns:
        The validated `ExperimentConfig`.
    """
    return config_from_dict(load_raw(path), overrides)


def load_raw(path: str | Path, what: str = "config", flag: str = "--config") -> dict[str, Any]:
    """A YAML config file as plain data, the paths it names made absolute against its folder (unchecked)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(str(path), f"cannot read the {what} ({error.strerror})", f"pass {flag} PATH") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            str(path), f"is not UTF-8 text (byte {error.start}: {error.reason})", f"save the {what} as UTF-8"
        ) from None
    try:
        raw = load_yaml(text, str(path))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(where, f"cannot parse YAML ({problem})", "fix the YAML syntax") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            str(path), f"expected a mapping at the top level, got {type(raw).__name__}", "see configs/demo.yaml"
        )
    # Paths the file names are relative to the file; `--set` paths (applied next) to the working folder.
    return config_relative_paths(raw, path.parent)


def config_from_dict(
    raw: dict[str, Any], overrides: list[str] | None = None, check_files: bool = True
) -> ExperimentConfig:
    """Build and validate an `ExperimentConfig` from plain data (e.g. parsed YAML).

    `check_files=False` leaves out the checks of files the config names
    (TF Hub handles), for a config read back from an export.
    """
    raw = apply_overrides(deep_copy(raw), overrides or [])
    config = build(ExperimentConfig, raw, "")
    _derive_labels(config)
    validate(config, check_files)
    if config.tune is not None:
        check_tune(config.tune, raw, lambda candidate: config_from_dict(candidate, check_files=check_files))
    return config


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`raw` with `--set` overrides applied, in place; a key on a task or modality the config lacks is a typo."""
    named = {kind: set(raw[kind]) if isinstance(raw.get(kind), dict) else set() for kind in ("tasks", "modalities")}
    for override in overrides:
        apply_override(raw, override)
        check_named_member(raw, override, named)
    return raw


def _derive_labels(config: ExperimentConfig) -> None:
    """A task whose targets come from its inputs (a masked language model) has its text column as its label."""
    for task in config.tasks.values():
        if not task.label and task.modality in config.modalities and task.type in TASK_TYPES:
            if not TASK_TYPES.get(task.type).needs_label:
                task.label = config.modalities[task.modality].columns[0]


def validate(config: ExperimentConfig, check_files: bool = True) -> None:
    """Check values and registry names (see `keras_mtmm.config.checks`); raise `ConfigError` on the first problem."""
    validate_config(config, check_files)


def check_named_member(raw: dict[str, Any], override: str, named: dict[str, set]) -> None:
    """`--set tasks.<t>.KEY=...` on a task (or modality) the config does not have, and that the override
    does not create whole (with its `type`), is a typo: say so, and suggest the closest name."""
    parts = override.partition("=")[0].strip().split(".")
    if len(parts) < 3 or parts[0] not in named or parts[1] in named[parts[0]]:
        return
    block = raw[parts[0]].get(parts[1])
    if isinstance(block, dict) and "type" in block:
        return  # a new task or modality, given whole by --set flags
    kind = {"tasks": "task", "modalities": "modality"}[parts[0]]
    hint = did_you_mean(parts[1], named[parts[0]])
    known = f"{parts[0]}: {', '.join(sorted(named[parts[0]])) or 'none'}"
    raise ConfigError(
        f"--set {override.partition('=')[0].strip()}",
        f"no {kind} named {parts[1]!r}",
        f"{hint} ({known})" if hint else f"{known}; a new {kind} needs {parts[0]}.{parts[1]}.type set first",
    )


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply one `dotted.key=value` override to raw config data, in place."""
    key, sep, value_text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError("--set", f"expected KEY=VALUE, got '{override}'", "write e.g. --set training.epochs=1")
    try:
        value = load_yaml(value_text, "--set") if value_text.strip() else None
    except yaml.YAMLError:
        value = value_text
    parts = key.split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(where, f"cannot set '{key}': '{where}' is not a mapping", "check the dotted key")
        node = child
    node[parts[-1]] = value
