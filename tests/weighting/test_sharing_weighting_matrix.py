"""Every sharing type with a loss-only and a gradient strategy: trains, exports, reloads with equal outputs.

A 2-task, 2-modality model (image + categorical; premium binary, price regression).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.data.tables import load_splits
from keras_mtmm.training.run import train
from tests.conftest import TWO_BY_TWO as BASE_TWO_BY_TWO

TWO_BY_TWO = [*BASE_TWO_BY_TWO, "sharing.expert_units=[8]", "sharing.num_experts=3"]
DEFAULT_PAIRS = {("ple", "uncertainty"), ("cross_stitch", "pcgrad")}


# Two pairs in the default run (each sharing type also trains and serves in test_sharing.py); the
# others with `pytest -m slow` (about 30 s each on 2 cores).
PAIRS = [
    pytest.param(sharing, weighting, marks=() if (sharing, weighting) in DEFAULT_PAIRS else pytest.mark.slow)
    for sharing in ("hard", "mmoe", "ple", "cross_stitch", "dselect_k", "mtan")
    for weighting in ("uncertainty", "pcgrad")
]


@pytest.mark.parametrize(("sharing", "weighting"), PAIRS)
def test_sharing_by_weighting_trains_exports_and_reloads(tmp_path, tiny_config_factory, sharing, weighting):
    config = tiny_config_factory(*TWO_BY_TWO, f"sharing.type={sharing}", f"weighting.strategy={weighting}")
    result = train(config, output_dir=tmp_path / "run", export_dir=tmp_path / "models", verbose=0)
    assert np.isfinite(result.history["loss"]).all()
    assert set(result.history) >= {"weight_premium", "weight_price", "premium_loss", "price_loss"}
    raw = result.preprocessor.raw_inputs(load_splits(config)["test"])
    expected = result.model.predict(result.preprocessor.transform(raw), verbose=0)
    serving = tf.saved_model.load(str(result.export_path)).signatures["serving_default"]
    outputs = serving(**{name: tf.constant(values) for name, values in raw.items()})
    assert sorted(outputs) == ["premium", "price"]
    for task in ("premium", "price"):
        np.testing.assert_allclose(outputs[task].numpy(), expected[task], rtol=1e-5, atol=1e-5)
