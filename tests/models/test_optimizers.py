"""training.optimizer / lr_schedule: the Keras optimizer built, with the schedule's exact values."""

from __future__ import annotations

import pytest

from keras_mtmm.config.schema import TrainingConfig
from keras_mtmm.models.optimizers import build_optimizer


def test_cosine_with_warmup_rises_linearly_then_follows_the_cosine():
    training = TrainingConfig(learning_rate=0.01, epochs=2, lr_schedule="cosine", warmup_steps=10)
    schedule = build_optimizer(training, steps_per_epoch=55).learning_rate  # 110 steps: 10 warm-up, 100 decay
    rate = build_optimizer(training, steps_per_epoch=55)._learning_rate
    assert float(rate(0)) == pytest.approx(0.0)
    assert float(rate(5)) == pytest.approx(0.005)  # halfway through the warm-up
    assert float(rate(10)) == pytest.approx(0.01)  # the peak
    assert float(rate(60)) == pytest.approx(0.005, rel=1e-5)  # half the decay: (1 + cos(pi/2)) / 2
    assert float(rate(110)) == pytest.approx(0.0, abs=1e-9)
    assert float(schedule) == pytest.approx(0.0)  # the optimizer starts at step 0


@pytest.mark.parametrize(
    "options, kind, checks",
    [
        ({"optimizer": "sgd", "momentum": 0.5, "clipnorm": 2.0}, "SGD", {"momentum": 0.5, "clipnorm": 2.0}),
        ({"optimizer": "adamw", "weight_decay": 0.01}, "AdamW", {"weight_decay": 0.01}),
        ({}, "Adam", {"clipnorm": None, "weight_decay": None}),
    ],
)
def test_optimizer_kind_and_options(options, kind, checks):
    optimizer = build_optimizer(TrainingConfig(**options))
    assert type(optimizer).__name__ == kind
    for key, value in checks.items():
        assert getattr(optimizer, key) == value
