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
    strategy: str,
    num_modalities: int,
    units: int,
    modality_weights: list[float] | None,
    name: str,
    rank: int = DEFAULT_RANK,
    depth: int = 1,
    num_heads: int = 2,
    task_names: list[str] | None = None,
):
    """Build the fusion layer a config names: its registered class's `from_settings`.

    `modality_weights` only for strategies with `takes_fixed_weights`; `task_names` (a fusion
    per task) only for those with `conditions_per_task`.
    """
    layer_class = FUSIONS.get(strategy)
    if modality_weights is not None and not getattr(layer_class, "takes_fixed_weights", False):
        raise ValueError(
            f"fusion strategy {strategy!r} takes no fixed modality_weights (only {fixed_weight_strategies()} do), "
            f"got {modality_weights}"
        )
    if task_names is not None and not getattr(layer_class, "conditions_per_task", False):
        raise ValueError(f"fusion strategy {strategy!r} cannot be conditioned per task (only 'attention' can)")
    settings = FusionSettings(num_modalities, units, modality_weights, rank, depth, num_heads, task_names)
    return layer_class.from_settings(settings, name)


def fixed_weight_strategies() -> list[str]:
    """The registered strategies that take fixed `fusion.weights` from the config."""
    return FUSIONS.names_with("takes_fixed_weights")
