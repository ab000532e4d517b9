"""The Transformer text encoder: serializable, blind to padding, and it learns what word order decides."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_mtmm.config.loading import load_config
from keras_mtmm.errors import ConfigError
from keras_mtmm.layers.encoders import TransformerTextEncoder
from tests.conftest import DEMO_CONFIG
from tests.support.layer_round_trip import check_round_trips

IDS = np.array([[3, 4, 5, 0], [6, 0, 0, 0], [7, 8, 9, 2]], dtype="int64")


@pytest.mark.parametrize("return_sequence", [False, True])
def test_config_and_keras_file_round_trips(tmp_path, return_sequence):
    check_round_trips(
        lambda: TransformerTextEncoder(
            12, 8, num_layers=2, num_heads=2, ff_units=16, units=6, return_sequence=return_sequence
        ),
        {"ids": IDS},
        tmp_path,
    )


def test_padding_is_never_attended_to():
    """A row's pooled vector does not change with what the padded positions would carry."""
    encoder = TransformerTextEncoder(12, 8, num_layers=2, num_heads=2, ff_units=16, units=6)
    before = keras.ops.convert_to_numpy(encoder(IDS))
    positions = keras.ops.convert_to_numpy(encoder.positions)
    positions[1:] += np.random.default_rng(0).normal(size=positions[1:].shape)  # row 1 has one token
    encoder.positions.assign(positions)
    after = keras.ops.convert_to_numpy(encoder(IDS))
    np.testing.assert_allclose(after[1], before[1], atol=1e-5)
    assert not np.allclose(after[0], before[0], atol=1e-3)  # (the others do change)


def order_task(rows: int, seed: int):
    """Sequences of 6 tokens holding "red" (id 2) and "blue" (id 3) once each among fillers (4..19):
    the label is whether red comes first. A bag of words cannot tell; positions and attention can."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, 20, size=(rows, 6))
    first = rng.random(rows) < 0.5
    for row in range(rows):
        a, b = sorted(rng.choice(6, size=2, replace=False))
        ids[row, a], ids[row, b] = (2, 3) if first[row] else (3, 2)
    return ids.astype("int64"), first.astype("float32")


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_it_learns_which_word_comes_first(seed):
    keras.utils.set_random_seed(seed)
    x, y = order_task(3000, seed)
    inputs = keras.Input(shape=(6,), dtype="int64")
    features = TransformerTextEncoder(20, 32, num_layers=2, num_heads=2, ff_units=64, units=16)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(features))
    model.compile(optimizer=keras.optimizers.Adam(0.002), loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x[:2500], y[:2500], epochs=12, batch_size=64, verbose=0)
    accuracy = model.evaluate(x[2500:], y[2500:], verbose=0)[1]
    assert accuracy >= 0.9, accuracy  # chance: 0.5


def test_the_config_checks_the_heads_divide_the_width():
    config = load_config(DEMO_CONFIG, ["modalities.text.encoder.type=transformer", "modalities.text.encoder.units=16"])
    assert config.modalities["text"].encoder.get().num_heads == 2
    with pytest.raises(ConfigError, match=r"modalities\.text\.encoder\.num_heads: the width 16 does not divide"):
        load_config(DEMO_CONFIG, ["modalities.text.encoder.type=transformer", "modalities.text.encoder.num_heads=3"])
