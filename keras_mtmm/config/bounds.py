"""The checks a registered class declares for its own config keys, run by the config checks.

A weighting strategy lists its hyperparameters' bounds beside its `from_settings` (e.g. CAGrad:
`Bound("cagrad_c", ">= 0", lambda c: c >= 0, "0.4")`), so adding a strategy touches its own file
and no list in `keras_mtmm.config.checks`.
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
