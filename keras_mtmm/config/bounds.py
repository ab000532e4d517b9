"""The checks a registered class declares for its own config keys, run by the config checks.

A registered class (a weighting strategy, a sharing type, an encoder, ...) lists the checks of its
own keys (`checks`, run on its sub-config, see `keras_mtmm.config.one_of`) beside its `config_class`
and `from_settings` (e.g. CAGrad: `Bound("cagrad_c", ">= 0", lambda c: c >= 0, "0.4")`), so adding a
strategy touches its own file and no list in `keras_mtmm.config.checks`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from keras_mtmm.errors import ConfigError, choice_hint


@dataclass(frozen=True)
class Bound:
    """`<section>.<key>` must satisfy `holds`; the error says `expected <expected>, got <value>; e.g. <example>`."""

    key: str
    expected: str
    holds: Callable[[float], bool]
    example: str

    def check(self, section, where: str) -> None:
        value = getattr(section, self.key)
        if not self.holds(value):
            raise ConfigError(f"{where}.{self.key}", f"expected {self.expected}, got {value}", f"e.g. {self.example}")


@dataclass(frozen=True)
class Choice:
    """`<section>.<key>` must be one of `choices`."""

    key: str
    choices: tuple[str, ...]

    def check(self, section, where: str) -> None:
        value = getattr(section, self.key)
        if value not in self.choices:
            raise ConfigError(f"{where}.{self.key}", f"unknown value {value!r}", choice_hint(str(value), self.choices))


@dataclass(frozen=True)
class Widths:
    """`<section>.<key>` is a list of layer widths, each a positive integer (and at least one unless `allow_empty`)."""

    key: str
    allow_empty: bool = True
    empty: str = "needs at least one layer"
    example: str = "[64]"

    def check(self, section, where: str) -> None:
        widths = getattr(section, self.key)
        if not widths and not self.allow_empty:
            raise ConfigError(f"{where}.{self.key}", self.empty, f"e.g. {self.key}: {self.example}")
        for i, width in enumerate(widths):
            if width < 1:
                raise ConfigError(
                    f"{where}.{self.key}[{i}]", f"expected a positive integer, got {width}", "set it to 1 or more"
                )


def positive(key: str, example: str = "1") -> Bound:
    """`<key>` is an integer >= 1."""
    return Bound(key, "a positive integer", lambda value: value >= 1, example)
