"""Validation of the `sharing` section's shared keys; each sharing type checks its own (`keras_mtmm.layers.sharing`)."""

from __future__ import annotations

from keras_mtmm.config.bounds import Widths
from keras_mtmm.config.choices import ACTIVATIONS
from keras_mtmm.errors import ConfigError, choice_hint


def validate_sharing(config) -> None:
    """Check `config.sharing`; raise `ConfigError` (where, what, fix) on the first problem."""
    sharing = config.sharing
    Widths("tower_units").check(sharing, "sharing")
    if not 0.0 <= sharing.dropout < 1.0:
        raise ConfigError("sharing.dropout", f"expected a rate in [0, 1), got {sharing.dropout}", "e.g. 0.1")
    if sharing.activation not in ACTIVATIONS:
        raise ConfigError(
            "sharing.activation",
            f"unknown activation {sharing.activation!r}",
            choice_hint(sharing.activation, ACTIVATIONS),
        )
    sharing.check_choice("sharing", config)
