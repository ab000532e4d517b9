"""The full built-in demo (about a minute): it must clearly beat chance on every task. `pytest -m slow`."""

from __future__ import annotations

import pytest

from tests.conftest import DEMO_CONFIG


@pytest.mark.slow
def test_full_demo_beats_chance_clearly(tmp_path):
    from keras_mtmm.config.loading import load_config
    from keras_mtmm.training.run import train

    result = train(load_config(DEMO_CONFIG), output_dir=tmp_path / "run", export=False, verbose=0)
    tasks = result.metrics["tasks"]
    assert tasks["shape"]["accuracy"] > 0.85  # chance: 1/3
    assert tasks["premium"]["accuracy"] > 0.85  # chance: 1/2; needs image + tabular fused
    assert tasks["price"]["mae"] < 4.0  # predicting the mean: about 8


@pytest.mark.slow
def test_late_fusion_cannot_solve_the_cross_modal_xor(tmp_path):
    """premium = warm colour XOR luxury material: averaging per-modality decisions stays near chance."""
    from keras_mtmm.config.loading import load_config
    from keras_mtmm.training.run import train

    config = load_config(DEMO_CONFIG, ["fusion.strategy=late"])
    result = train(config, output_dir=tmp_path / "run", export=False, verbose=0)
    assert result.metrics["tasks"]["premium"]["accuracy"] < 0.7
    assert result.metrics["tasks"]["shape"]["accuracy"] > 0.85


@pytest.mark.slow
def test_the_cross_modal_task_needs_fusion_of_both_modalities(tmp_path):
    """premium needs the image (warm colour) and the tabular columns (luxe material) together.

    Text is left out everywhere (it names the colour or material on some rows),
    so each single-modality model sees only half of the XOR.
    """
    import yaml

    from keras_mtmm.config.loading import config_from_dict
    from keras_mtmm.training.run import train

    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    accuracy = {}
    for case, kept in {
        "image": ["image"],
        "tabular": ["numeric", "categorical"],
        "fused": ["image", "numeric", "categorical"],
    }.items():
        case_raw = {**raw, "modalities": {name: raw["modalities"][name] for name in kept}}
        result = train(config_from_dict(case_raw), output_dir=tmp_path / case, export=False, verbose=0)
        accuracy[case] = result.metrics["tasks"]["premium"]["accuracy"]
    assert accuracy["image"] < 0.65 and accuracy["tabular"] < 0.65, accuracy
    assert accuracy["fused"] > 0.85, accuracy
