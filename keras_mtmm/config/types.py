"""Raw config data (parsed YAML) -> the typed dataclasses of `keras_mtmm.config.schema`, checking keys and types.

Every mismatch is a `ConfigError` at the dotted key: an unknown key (with the
closest known one), a value of the wrong type, a non-finite number.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any

from keras_mtmm.errors import ConfigError, did_you_mean


def deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [deep_copy(item) for item in value]
    return value


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def build(cls: type, raw: Any, where: str, plain_only: bool = False, key_wheres: dict | None = None) -> Any:
    """Convert raw data into dataclass `cls`, checking keys and types.

    A class with `from_raw` (a `keras_mtmm.config.one_of.OneOfConfig`) builds itself, calling
    back with `plain_only=True` for its shared keys; `key_wheres` names keys given elsewhere
    (a legacy flat key of a sub-config).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            where or "config",
            f"expected a mapping, got {type(raw).__name__} {raw!r}",
            f"write '{where}' as a block of keys",
        )
    if hasattr(cls, "from_raw") and not plain_only:
        return cls.from_raw(raw, where, build)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in ("sub_configs", "origins")]
    for key in raw:
        if key not in names:
            suggestion = did_you_mean(key, names)
            fix = suggestion or f"known keys: {', '.join(names)}"
            raise ConfigError(_join(where, str(key)), "unknown key", fix)
    key_wheres = key_wheres or {}
    values = {key: _convert(hints[key], raw[key], key_wheres.get(key) or _join(where, key)) for key in raw}
    return cls(**values)


def to_plain(value: Any) -> Any:
    """A config (dataclasses, one-of blocks) as YAML-ready data."""
    if hasattr(value, "to_raw"):
        return value.to_raw(to_plain)
    if dataclasses.is_dataclass(value):
        return {
            f.name: to_plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in ("sub_configs", "origins")
        }
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_plain(item) for item in value]
    return value


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(hint))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _convert(hint: Any, value: Any, where: str) -> Any:
    """Check `value` against the type hint and convert it (int -> float, nested dataclasses)."""
    if hint is typing.Any:  # (checked by its section's own checks: a tune space entry)
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as error:
                if error.where != where or "finite" in error.what:
                    raise  # the right kind with a bad part (an unknown key, a NaN item) says more
        raise _type_error(hint, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(hint, value, where)
        (item_hint,) = typing.get_args(hint)
        return [_convert(item_hint, item, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise _type_error(hint, value, where)
        _, item_hint = typing.get_args(hint)
        return {str(key): _convert(item_hint, item, _join(where, str(key))) for key, item in value.items()}
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise _type_error(hint, value, where)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(hint, value, where)
        return value
    if hint is float:
        if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(hint, value, where)
        if not math.isfinite(value):
            raise ConfigError(where, f"expected a finite number, got {value}", f"set '{where}' to a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _type_error(hint, value, where)
        return value
    raise TypeError(f"unsupported config type {hint!r} at {where}")


def _type_error(hint: Any, value: Any, where: str) -> ConfigError:
    return ConfigError(
        where,
        f"expected {_type_name(hint)}, got {type(value).__name__} {value!r}",
        f"set '{where}' to {_type_name(hint)}",
    )
