"""The Keras optimizer and learning-rate schedule a `TrainingConfig` describes."""

from __future__ import annotations

import keras


def build_optimizer(training, steps_per_epoch: int | None = None) -> keras.optimizers.Optimizer:
    """The Keras optimizer `training` (a `TrainingConfig`) describes.

    `cosine` decays from `learning_rate` to 0 over `epochs · steps_per_epoch`
    steps (after `warmup_steps` of linear warm-up from 0), with
    `keras.optimizers.schedules.CosineDecay`; past its end it stays at 0.

    Example:
        >>> build_optimizer(TrainingConfig(optimizer="sgd", momentum=0.9, clipnorm=1.0))
    """
    rate = training.learning_rate
    if training.lr_schedule == "cosine":
        total = training.epochs * max(int(steps_per_epoch or 1), 1)
        warmup = int(training.warmup_steps)
        if warmup:
            rate = keras.optimizers.schedules.CosineDecay(
                0.0, max(total - warmup, 1), warmup_target=training.learning_rate, warmup_steps=warmup
            )
        else:
            rate = keras.optimizers.schedules.CosineDecay(training.learning_rate, max(total, 1))
    options = {"learning_rate": rate, "clipnorm": training.clipnorm}
    if training.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=training.momentum, weight_decay=training.weight_decay or None, **options)
    if training.optimizer == "adamw":
        return keras.optimizers.AdamW(weight_decay=training.weight_decay, **options)
    return keras.optimizers.Adam(weight_decay=training.weight_decay or None, **options)
