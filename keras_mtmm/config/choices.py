"""The closed sets of values that config keys take and that no registry holds (the registries hold the rest)."""

from __future__ import annotations

# training.optimizer and training.lr_schedule (keras_mtmm.models.optimizers builds them).
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")
# The hidden activations of encoders and sharing blocks (`activation` keys).
ACTIVATIONS = ("relu", "gelu", "silu")
# modalities.<m>.encoder.pooling of a cnn image encoder.
POOLINGS = ("grid", "flatten", "average")
# weighting.famo_update: FAMO's weight update on the step's batch, or on the next one.
FAMO_UPDATES = ("same_batch", "next_batch")
