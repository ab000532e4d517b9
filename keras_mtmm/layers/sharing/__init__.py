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
from keras_mtmm.registry import SHARINGS

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
    """Build the sharing layer a `SharingConfig` names: its registered class's `from_settings`."""
    return SHARINGS.get(sharing.type, "sharing.type").from_settings(sharing, task_names, name)
