"""Validation of the `sharing` section: layer widths, expert counts, and what a sharing type needs elsewhere."""

from __future__ import annotations

from typing import Any

from keras_mtmm.config.choices import ACTIVATIONS
from keras_mtmm.errors import ConfigError, choice_hint

DSELECT_KEYS = {"dselect_k": 2, "dselect_gamma": 1.0, "dselect_entropy_weight": 0.1, "dselect_per_example": False}


def validate_sharing(config, registries: Any) -> None:
    """Check `config.sharing`; raise `ConfigError` (where, what, fix) on the first problem."""
    sharing = config.sharing
    registries.SHARINGS.get(sharing.type, "sharing.type")
    for key in ("shared_units", "tower_units", "expert_units"):
        for i, units in enumerate(getattr(sharing, key)):
            _check_positive(f"sharing.{key}[{i}]", units)
    if not 0.0 <= sharing.dropout < 1.0:
        raise ConfigError("sharing.dropout", f"expected a rate in [0, 1), got {sharing.dropout}", "e.g. 0.1")
    if sharing.activation not in ACTIVATIONS:
        raise ConfigError(
            "sharing.activation",
            f"unknown activation {sharing.activation!r}",
            choice_hint(sharing.activation, ACTIVATIONS),
        )
    if sharing.type in ("mmoe", "ple", "dselect_k") and not sharing.expert_units:
        raise ConfigError("sharing.expert_units", "experts need at least one layer", "e.g. expert_units: [64]")
    if sharing.type == "mmoe":
        _check_positive("sharing.num_experts", sharing.num_experts)
    if sharing.type == "ple":
        _validate_ple(sharing)
    if sharing.type == "cross_stitch" and not sharing.shared_units:
        raise ConfigError("sharing.shared_units", "cross-stitch needs at least one column layer", "e.g. [64, 32]")
    _validate_dselect_k(sharing)
    if sharing.type == "mtan":
        _validate_mtan(config, registries)


def _validate_ple(sharing) -> None:
    _check_positive("sharing.num_levels", sharing.num_levels)
    for key in ("num_shared_experts", "num_task_experts"):
        if getattr(sharing, key) < 0:
            raise ConfigError(f"sharing.{key}", f"expected 0 or more, got {getattr(sharing, key)}", "e.g. 1")
    if sharing.num_shared_experts + sharing.num_task_experts < 1:
        raise ConfigError(
            "sharing.num_task_experts",
            "each task's gate needs at least one expert, got 0 shared and 0 task experts",
            "set num_shared_experts or num_task_experts to 1 or more",
        )
    if sharing.num_levels > 1 and sharing.num_shared_experts < 1:
        raise ConfigError(
            "sharing.num_shared_experts",
            "stacked PLE levels pass information through the shared experts, got 0",
            "set num_shared_experts >= 1 or num_levels: 1",
        )


def _validate_dselect_k(sharing) -> None:
    if sharing.type != "dselect_k":
        for key, default in DSELECT_KEYS.items():
            if getattr(sharing, key) != default:
                raise ConfigError(
                    f"sharing.{key}", f"applies to sharing.type dselect_k only, not '{sharing.type}'", f"remove {key}"
                )
        return
    if sharing.num_experts < 2:
        raise ConfigError(
            "sharing.num_experts", f"DSelect-k selects among 2 or more experts, got {sharing.num_experts}", "e.g. 4"
        )
    if not 1 <= sharing.dselect_k <= sharing.num_experts:
        raise ConfigError(
            "sharing.dselect_k",
            f"expected 1 to num_experts ({sharing.num_experts}) experts per task, got {sharing.dselect_k}",
            "e.g. 2",
        )
    if not sharing.dselect_gamma > 0:
        raise ConfigError("sharing.dselect_gamma", f"expected > 0, got {sharing.dselect_gamma}", "e.g. 1.0")
    if not sharing.dselect_entropy_weight >= 0:
        raise ConfigError(
            "sharing.dselect_entropy_weight", f"expected >= 0, got {sharing.dselect_entropy_weight}", "e.g. 0.1"
        )


def _validate_mtan(config, registries: Any) -> None:
    """MTAN attends over a cnn image encoder's feature maps and gives each task its own fused vector."""
    if not any(m.type == "image" and m.encoder.type in (None, "cnn") for m in config.modalities.values()):
        raise ConfigError(
            "sharing.type",
            "mtan puts per-task attention on the feature maps of a cnn image encoder, and no image modality has one",
            "add an image modality with encoder type cnn, or choose another sharing.type (e.g. hard)",
        )
    fusion = registries.FUSIONS.get(config.fusion.strategy, "fusion.strategy")
    if fusion.is_decision_level or getattr(fusion, "takes_sequences", False):
        raise ConfigError(
            "fusion.strategy",
            f"mtan fuses each task's attended image vector with the other modalities, which "
            f"'{config.fusion.strategy}' fusion does not do (it fuses "
            f"{'decisions' if fusion.is_decision_level else 'token sequences'})",
            "use early, intermediate, weighted, gated, attention or low_rank fusion",
        )
    if config.weighting.strategy == "mgda":
        raise ConfigError(
            "weighting.strategy",
            "mgda works on the one shared representation, and mtan gives each task its own",
            "use another weighting.strategy (e.g. pcgrad) or sharing.type",
        )


def _check_positive(where: str, value: int) -> None:
    if value < 1:
        raise ConfigError(where, f"expected a positive integer, got {value}", "set it to 1 or more")
