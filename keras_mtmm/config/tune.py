"""The `tune:` section: a hyperparameter search over the config's own dotted keys (`mtmm tune`).

```yaml
tune:
  objective: {metric: val_loss, direction: min}
  # or a weighted sum: {metrics: {val_shape_accuracy: 1, val_price_mae: -0.1}, direction: max}
  algorithm: random          # random | bayesian | hyperband
  max_trials: 20             # (hyperband: its budget is max_epochs and factor instead)
  space:
    fusion.strategy: {choice: [early, gated]}
    tasks.price.weight: {float: [0.1, 10], log: true}
    sharing.num_experts: {int: [2, 8]}
```

A space key is any key `--set` takes. Each choice, and each end of a range, must give a valid config
on its own: the checks build it, and an error names `tune.space.<key>` and the value. Values that are
valid alone may still clash in a trial (a weighting strategy with a fusion it cannot use): that trial
is recorded as failed, and the search goes on. The objective is read from the kept epoch of each
trial's history (`val_loss`, or a validation metric `val_<task>_<metric>`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from keras_mtmm.errors import ConfigError, choice_hint

ALGORITHMS = ("random", "bayesian", "hyperband")
DIRECTIONS = ("min", "max")
RANGE_KINDS = ("float", "int")
ENTRY_KEYS = ("choice", "float", "int", "log", "step")


@dataclass
class TuneObjective:
    """What a trial is scored by: one history metric, or a weighted sum of several."""

    metric: str | None = None
    metrics: dict[str, float] | None = None
    direction: str = "min"

    def names(self) -> dict[str, float]:
        """`{history metric: weight}` (one metric: weight 1; neither: `val_loss`)."""
        if self.metrics:
            return dict(self.metrics)
        return {self.metric or "val_loss": 1.0}


@dataclass
class TuneConfig:
    """The `tune` section (see the module docstring)."""

    objective: TuneObjective = field(default_factory=TuneObjective)
    algorithm: str = "random"
    max_trials: int = 10
    max_epochs: int | None = None
    factor: int = 3
    space: dict[str, Any] = field(default_factory=dict)


def check_tune(tune: TuneConfig, raw: dict, build_config: Callable[[dict], Any]) -> None:
    """Check the `tune` section; `build_config(raw)` builds and checks a config (each space value's)."""
    if tune.algorithm not in ALGORITHMS:
        raise ConfigError(
            "tune.algorithm", f"unknown value {tune.algorithm!r}", choice_hint(tune.algorithm, ALGORITHMS)
        )
    objective = tune.objective
    if objective.direction not in DIRECTIONS:
        raise ConfigError("tune.objective.direction", f"unknown value {objective.direction!r}", "use min or max")
    if objective.metric and objective.metrics:
        raise ConfigError("tune.objective", "both metric and metrics are given", "keep one")
    for name in objective.names():
        if name != "loss" and not name.startswith("val_"):
            raise ConfigError(
                "tune.objective",
                f"{name!r} is not a validation metric",
                "use val_loss or val_<task>_<metric> (a trial is never scored on its test split)",
            )
    for key, value in (("max_trials", tune.max_trials), ("factor", tune.factor), ("max_epochs", tune.max_epochs)):
        if value is not None and value < (2 if key == "factor" else 1):
            raise ConfigError(f"tune.{key}", f"expected an integer >= {2 if key == 'factor' else 1}, got {value}", "")
    if not tune.space:
        raise ConfigError("tune.space", "no key to search over", "map dotted config keys to {choice: [...]} or ranges")
    base = {key: value for key, value in raw.items() if key != "tune"}
    for key, entry in tune.space.items():
        for value in entry_values(key, entry):
            candidate = yaml.safe_load(yaml.safe_dump(base))  # (a deep copy)
            set_dotted(candidate, key, value, f"tune.space.{key}")
            try:
                build_config(candidate)
            except ConfigError as error:
                raise ConfigError(
                    f"tune.space.{key}", f"{value!r} gives {error.where}: {error.what}", error.fix
                ) from None


def entry_values(key: str, entry) -> list:
    """The values a space entry's checks try: every choice, or both ends of a range."""
    where = f"tune.space.{key}"
    if key.split(".")[0] in ("tune", "name"):
        raise ConfigError(where, f"'{key}' cannot be searched over", "search over model, task and training keys")
    if not isinstance(entry, dict) or not entry:
        raise ConfigError(
            where, f"expected {{choice: [...]}}, {{float: [lo, hi]}} or {{int: [lo, hi]}}, got {entry!r}", ""
        )
    unknown = [name for name in entry if name not in ENTRY_KEYS]
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", "unknown key", choice_hint(str(unknown[0]), ENTRY_KEYS))
    kinds = [name for name in ("choice", *RANGE_KINDS) if name in entry]
    if len(kinds) != 1:
        raise ConfigError(where, f"give one of choice, float or int, got {kinds or 'none'}", "")
    kind = kinds[0]
    if kind == "choice":
        values = entry["choice"]
        if not isinstance(values, list) or not values or len({repr(v) for v in values}) != len(values):
            raise ConfigError(f"{where}.choice", f"expected a list of distinct values, got {values!r}", "")
        if len({type(v) for v in values}) != 1 or not isinstance(values[0], (str, int, float, bool)):
            raise ConfigError(f"{where}.choice", f"expected values of one scalar type, got {values!r}", "")
        if "log" in entry or "step" in entry:
            raise ConfigError(where, "log and step are for ranges", "remove them")
        return list(values)
    bounds = entry[kind]
    number = int if kind == "int" else (int, float)
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or any(isinstance(b, bool) or not isinstance(b, number) or not math.isfinite(b) for b in bounds)
        or not bounds[0] < bounds[1]
    ):
        raise ConfigError(f"{where}.{kind}", f"expected [low, high] {kind} numbers, low < high, got {bounds!r}", "")
    if entry.get("log", False) and bounds[0] <= 0:
        raise ConfigError(f"{where}.{kind}", f"a log range needs low > 0, got {bounds[0]}", "")
    step = entry.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, number) or step <= 0):
        raise ConfigError(f"{where}.step", f"expected a positive {kind}, got {step!r}", "")
    return [bounds[0], bounds[1]] if kind == "int" else [float(bounds[0]), float(bounds[1])]


def set_dotted(raw: dict, key: str, value, where: str) -> None:
    """Set `a.b.c` in raw config data, making the mappings on the way (as `--set` does)."""
    parts = key.split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(where, f"'{'.'.join(parts[: depth + 1])}' is not a mapping", "check the dotted key")
        node = child
    node[parts[-1]] = value
