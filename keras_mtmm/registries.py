"""The project's registries, one per config key that names an implementation.

Implementations register themselves where they are defined; importing this
module imports them all, so every registry is complete once it is loaded.
"""

from __future__ import annotations

from keras_mtmm.registry import Registry

SOURCES: Registry = Registry("data.source")
ENCODERS: Registry = Registry("encoder.type")
FUSIONS: Registry = Registry("fusion.strategy")
SHARINGS: Registry = Registry("sharing.type")
TASK_TYPES: Registry = Registry("task type")
WEIGHTINGS: Registry = Registry("weighting.strategy")

# The encoder a modality gets when its config names none.
DEFAULT_ENCODERS = {"image": "cnn", "text": "conv1d", "numeric": "mlp", "categorical": "embedding"}

# Imported last: each module registers its implementations into the tables above.
from keras_mtmm import encoders, fusion, heads, sharing, weighting  # noqa: E402, F401
from keras_mtmm.data import sources, tfrecord  # noqa: E402, F401
