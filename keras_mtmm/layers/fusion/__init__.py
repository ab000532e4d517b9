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

from keras_mtmm.layers.fusion.base import ModalityDropout
from keras_mtmm.layers.fusion.cross_attention import CrossAttentionFusion, TokenMask
from keras_mtmm.layers.fusion.learned import DEFAULT_RANK, AttentionFusion, GatedFusion, LowRankFusion
from keras_mtmm.layers.fusion.simple import ConcatFusion, IntermediateFusion, LateFusion, WeightedSumFusion
from keras_mtmm.registry import FUSIONS

__all__ = [
    "DEFAULT_RANK",
    "AttentionFusion",
    "ConcatFusion",
    "CrossAttentionFusion",
    "GatedFusion",
    "IntermediateFusion",
    "LateFusion",
    "LowRankFusion",
    "ModalityDropout",
    "TokenMask",
    "WeightedSumFusion",
    "build_fusion",
]

# Strategies that take fixed `modality_weights` from the config.
FIXED_WEIGHT_STRATEGIES = ("weighted", "late")


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
    """Build the fusion layer a config names (explicit arguments, no config objects).

    `task_names` (attention only) conditions the attention on the task.
    """
    layer_class = FUSIONS.get(strategy)
    if modality_weights is not None and strategy not in FIXED_WEIGHT_STRATEGIES:
        raise ValueError(
            f"fusion strategy {strategy!r} takes no fixed modality_weights (only {FIXED_WEIGHT_STRATEGIES} do), "
            f"got {modality_weights}"
        )
    if task_names is not None and layer_class is not AttentionFusion:
        raise ValueError(f"fusion strategy {strategy!r} cannot be conditioned per task (only 'attention' can)")
    if layer_class is ConcatFusion:
        return ConcatFusion(name=name)
    if layer_class is WeightedSumFusion:
        return WeightedSumFusion(num_modalities, units=units, modality_weights=modality_weights, name=name)
    if layer_class is LateFusion:
        return LateFusion(num_modalities, modality_weights=modality_weights, name=name)
    if layer_class is IntermediateFusion:
        return IntermediateFusion(num_modalities, units=units, depth=depth, name=name)
    if layer_class is LowRankFusion:
        return LowRankFusion(num_modalities, units=units, rank=rank, name=name)
    if layer_class is AttentionFusion:
        return AttentionFusion(num_modalities, units=units, task_names=task_names, name=name)
    if layer_class is CrossAttentionFusion:
        return CrossAttentionFusion(num_modalities, units=units, num_heads=num_heads, name=name)
    if layer_class is GatedFusion:
        return GatedFusion(num_modalities, units=units, name=name)
    raise ValueError(f"no builder for fusion strategy {strategy!r}")
