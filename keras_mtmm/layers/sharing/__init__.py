"""How parameters are shared between tasks: one file per sharing type.

Every sharing layer takes the fused feature vector `[batch, features]` and
returns `{task_name: [batch, units]}`, the input of that task's head. MTAN
shares earlier, in the image encoder's conv blocks (`mtan.py`): its layer
takes each task's own fused vector, `{task_name: [batch, features]}`.
"""

from __future__ import annotations

from keras_mtmm.layers.sharing.cross_stitch import CrossStitch
from keras_mtmm.layers.sharing.dselect_k import DSelectK
from keras_mtmm.layers.sharing.hard import HardSharing
from keras_mtmm.layers.sharing.mmoe import MMoE
from keras_mtmm.layers.sharing.mtan import MTAN, TaskAttentionImageEncoder
from keras_mtmm.layers.sharing.ple import PLE

__all__ = [
    "MTAN",
    "PLE",
    "CrossStitch",
    "DSelectK",
    "HardSharing",
    "MMoE",
    "TaskAttentionImageEncoder",
    "build_sharing",
]


def build_sharing(sharing, task_names: list[str], name: str):
    """Build the sharing layer a `SharingConfig` names (explicit arguments, no config objects)."""
    if sharing.type == "hard":
        return HardSharing(
            task_names,
            shared_units=sharing.shared_units,
            tower_units=sharing.tower_units,
            dropout=sharing.dropout,
            activation=sharing.activation,
            name=name,
        )
    if sharing.type == "mmoe":
        return MMoE(
            task_names,
            num_experts=sharing.num_experts,
            expert_units=sharing.expert_units,
            tower_units=sharing.tower_units,
            dropout=sharing.dropout,
            activation=sharing.activation,
            name=name,
        )
    if sharing.type == "dselect_k":
        return DSelectK(
            task_names,
            num_experts=sharing.num_experts,
            num_selected=sharing.dselect_k,
            expert_units=sharing.expert_units,
            tower_units=sharing.tower_units,
            gamma=sharing.dselect_gamma,
            entropy_weight=sharing.dselect_entropy_weight,
            per_example=sharing.dselect_per_example,
            dropout=sharing.dropout,
            activation=sharing.activation,
            name=name,
        )
    if sharing.type == "ple":
        return PLE(
            task_names,
            num_levels=sharing.num_levels,
            num_shared_experts=sharing.num_shared_experts,
            num_task_experts=sharing.num_task_experts,
            expert_units=sharing.expert_units,
            tower_units=sharing.tower_units,
            dropout=sharing.dropout,
            activation=sharing.activation,
            name=name,
        )
    if sharing.type == "cross_stitch":
        return CrossStitch(
            task_names,
            column_units=sharing.shared_units,
            tower_units=sharing.tower_units,
            dropout=sharing.dropout,
            activation=sharing.activation,
            name=name,
        )
    if sharing.type == "mtan":
        return MTAN(
            task_names,
            tower_units=sharing.tower_units,
            dropout=sharing.dropout,
            activation=sharing.activation,
            name=name,
        )
    raise ValueError(f"no builder for sharing type {sharing.type!r}")
