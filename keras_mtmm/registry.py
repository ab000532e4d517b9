"""Registries by name: fusion strategies, sharing types, task types, encoders, sources.

A registry maps a config name to an implementation. A miss raises a
`ConfigError` that names the config key, lists what exists and suggests the
closest name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from keras_mtmm.errors import ConfigError, choice_hint

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> implementation table for one config key.

    Args:
        config_key: the config key whose values name entries, e.g.
            `"fusion.strategy"`; used in error messages.

    Example:
        >>> FUSIONS = Registry("fusion.strategy")
        >>> @FUSIONS.register("early")
        ... class EarlyFusion: ...
        >>> FUSIONS.get("early")
    """

    def __init__(self, config_key: str):
        self.config_key = config_key
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers an implementation under `name`."""

        def decorator(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.config_key} '{name}' is registered twice")
            self._entries[name] = entry
            return entry

        return decorator

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def get(self, name: str, where: str | None = None) -> T:
        """Return the entry for `name`, or raise a `ConfigError` naming the key.

        Args:
            name: the name from the config.
            where: the dotted key to blame; defaults to the registry's key.
        """
        if name not in self._entries:
            raise ConfigError(
                where or self.config_key,
                f"unknown {self.config_key} '{name}'",
                choice_hint(name, self._entries),
            )
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names_with(self, flag: str) -> list[str]:
        """The sorted names of the entries whose class attribute `flag` is true (e.g. `uses_gradients`)."""
        return [name for name in self.names() if getattr(self._entries[name], flag, False)]

    def holds(self, entry: T) -> bool:
        """Whether `entry` (e.g. a layer's class) is registered here, under any name."""
        return any(entry is registered for registered in self._entries.values())


SOURCES: Registry = Registry("data.source")
SAMPLERS: Registry = Registry("data.sampler")
ENCODERS: Registry = Registry("encoder.type")
FUSIONS: Registry = Registry("fusion.strategy")
SHARINGS: Registry = Registry("sharing.type")
TASK_TYPES: Registry = Registry("task type")
WEIGHTINGS: Registry = Registry("weighting.strategy")
MODALITY_TYPES: Registry = Registry("modality type")
