"""The token layers round-trip (config and `.keras`): TokenHead, MaskedMeanPool, TokenMasking; and what they compute."""

from __future__ import annotations

import numpy as np

from keras_mtmm.layers.encoders.layers import MaskedMeanPool
from keras_mtmm.layers.heads import TokenHead
from keras_mtmm.layers.masking import TokenMasking
from tests.support.layer_round_trip import check_round_trips

RNG = np.random.default_rng(0)
IDS = np.array([[3, 5, 2, 0, 0], [7, 1, 4, 6, 2]], dtype="int64")  # 0: padding
SEQUENCE = RNG.normal(size=(2, 5, 4)).astype("float32")


def positional(layer, inputs):
    return layer(*inputs.values())


def test_the_token_head_round_trips_and_is_zero_where_not_asked(tmp_path):
    asked = (IDS > 0).astype("float32")
    loaded = check_round_trips(lambda: TokenHead(3, name="head"), {"s": SEQUENCE, "a": asked}, tmp_path, positional)
    out = np.asarray(loaded(SEQUENCE, asked))
    np.testing.assert_allclose(out.sum(axis=-1), asked, atol=1e-6)  # a softmax where asked, 0 elsewhere


def test_the_masked_mean_round_trips_and_leaves_padding_out(tmp_path):
    data = {"s": SEQUENCE, "ids": IDS}
    loaded = check_round_trips(lambda: MaskedMeanPool(name="pool"), data, tmp_path, positional, randomize=None)
    np.testing.assert_allclose(np.asarray(loaded(SEQUENCE, IDS))[0], SEQUENCE[0, :3].mean(axis=0), atol=1e-6)


def test_token_masking_round_trips_with_the_same_positions_outside_training(tmp_path):
    loaded = check_round_trips(
        lambda: TokenMasking(0.4, mask_id=9, seed=2, name="masking"), {"ids": IDS}, tmp_path, randomize=None
    )
    masked, chosen = (np.asarray(x) for x in loaded(IDS))
    assert not chosen[IDS == 0].any() and (masked[chosen > 0] == 9).all()
