"""Fusion strategies: how modality features (or decisions) are combined. One file per family.

- `early`: concatenate the modality feature vectors (feature-level fusion).
- `intermediate`: `depth` modality-specific layers, then concatenation.
- `weighted`: project each modality to one width and take `h = Σ_i w_i h_i`,
  with w fixed from the config or learned as a softmax of logits.
- `late`: decision-level fusion (Baltrušaitis et al., "Multimodal Machine
  Learning: A Survey and Taxonomy", 2018): each modality gets its own trunk
  and task heads, and each task's prediction is the weighted average of the
  per-modality predictions.
- `gated`: a gated multimodal unit (Arevalo et al., 2017) for M modalities:
  per-example softmax gates over tanh projections.
- `attention`: per-example attention over projected modality vectors,
  optionally conditioned per task (`per_task`).
- `low_rank`: low-rank multimodal (tensor) fusion (Liu et al., ACL 2018).
- `cross_attention`: over sequence-shaped encoder outputs, every modality's
  tokens attend to the other modalities' tokens before pooling.

Each strategy is a registered, serializable Keras layer called as
`fusion(features, presence)`, where `presence` [B, M] marks the modalities an
example has (see `base.py`: missing modalities are left out, and weights
renormalise over the present ones). `is_decision_level` and
`takes_sequences` tell the model builder where the layer goes and what it
reads; layers with per-example or learned weights have
`modality_weight_values(features, presence)`, which `mtmm inspect` reports.
"""

from __future__ import annotations

import dataclasses

from keras_mtmm.config.one_of import NoKeys
from keras_mtmm.layers.fusion.base import FusionSettings, ModalityDropout
from keras_mtmm.layers.fusion.cross_attention import CrossAttentionFusion, TokenMask
from keras_mtmm.layers.fusion.learned import DEFAULT_RANK, AttentionFusion, GatedFusion, LowRankFusion
from keras_mtmm.layers.fusion.simple import ConcatFusion, IntermediateFusion, LateFusion, WeightedSumFusion
from keras_mtmm.registry import FUSIONS

__all__ = [
    "DEFAULT_RANK",
    "AttentionFusion",
    "ConcatFusion",
    "FusionSettings",
    "CrossAttentionFusion",
    "GatedFusion",
    "IntermediateFusion",
    "LateFusion",
    "LowRankFusion",
    "ModalityDropout",
    "TokenMask",
    "WeightedSumFusion",
    "build_fusion",
    "fixed_weight_strategies",
]


def build_fusion(
    strategy: str, num_modalities: int, name: str, task_names: list[str] | None = None, options=None, **keys
):
    """Build the fusion layer a config names: its registered class's `from_settings`.

    Args:
        strategy: the registered name.
        num_modalities: M.
        name: the layer's name.
        task_names: the tasks (a per-task strategy conditions on them).
        options: the strategy's sub-config (`fusion.get()`); by default its
            `config_class` with `keys` (e.g. `units=8`) replacing defaults.
    """
    layer_class = FUSIONS.get(strategy, "fusion.strategy")
    if options is None:
        options = dataclasses.replace((getattr(layer_class, "config_class", None) or NoKeys)(), **keys)
    return layer_class.from_settings(FusionSettings(num_modalities, options, task_names), name)


def fixed_weight_strategies() -> list[str]:
    """The registered strategies that take fixed `fusion.weights` from the config."""
    return FUSIONS.names_with("takes_fixed_weights")
