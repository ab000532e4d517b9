"""The full built-in demo (about a minute): it must clearly beat chance on every task. `pytest -m slow`."""

from __future__ import annotations

import pytest

from .conftest import DEMO_CONFIG


@pytest.mark.slow
def test_full_demo_beats_chance_clearly(tmp_path):
    from keras_mtmm.config import load_config
    from keras_mtmm.training import train

    result = train(load_config(DEMO_CONFIG), output_dir=tmp_path / "run", export=False, verbose=0)
    tasks = result.metrics["tasks"]
    assert tasks["shape"]["accuracy"] > 0.85  # chance: 1/3
    assert tasks["premium"]["accuracy"] > 0.85  # chance: 1/2; needs image + tabular fused
    assert tasks["price"]["mae"] < 4.0  # predicting the mean: about 8


@pytest.mark.slow
def test_late_fusion_cannot_solve_the_cross_modal_xor(tmp_path):
    """premium = warm colour XOR luxury material: averaging per-modality decisions stays near chance."""
    from keras_mtmm.config import load_config
    from keras_mtmm.training import train

    config = load_config(DEMO_CONFIG, ["fusion.strategy=late"])
    result = train(config, output_dir=tmp_path / "run", export=False, verbose=0)
    assert result.metrics["tasks"]["premium"]["accuracy"] < 0.7
    assert result.metrics["tasks"]["shape"]["accuracy"] > 0.85
