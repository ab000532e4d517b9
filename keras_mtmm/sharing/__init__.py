"""How parameters are shared between tasks: one file per sharing type."""

from keras_mtmm.sharing.hard import HardSharing

__all__ = ["HardSharing"]
