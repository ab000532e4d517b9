"""How parameters are shared between tasks: one file per sharing type.

Every sharing layer takes the fused feature vector `[batch, features]` and
returns `{task_name: [batch, units]}`, the input of that task's head.
"""

from __future__ import annotations

from keras_mtmm.sharing.hard import HardSharing

__all__ = ["HardSharing", "build_sharing"]


def build_sharing(sharing, task_names: list[str], name: str):
    """Build the sharing layer a `SharingConfig` names (explicit arguments, no config objects)."""
    if sharing.type == "hard":
        return HardSharing(
            task_names,
            shared_units=sharing.shared_units,
            tower_units=sharing.tower_units,
            dropout=sharing.dropout,
            name=name,
        )
    raise ValueError(f"no builder for sharing type {sharing.type!r}")
