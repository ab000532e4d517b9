"""GradDrop, GradVac, DB-MTL and FAMO end to end: train 2 steps, reload the `.keras` file, serve the export.

A 2-task, 2-modality model (image + categorical; premium binary, price
regression). Each strategy's state (GradVac's targets, DB-MTL's EMA, FAMO's
logits) must come back from the `.keras` file.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.data.tables import load_splits
from keras_mtmm.errors import ConfigError
from keras_mtmm.models.multitask import compile_model
from keras_mtmm.models.network import build_model
from keras_mtmm.training.run import train
from tests.conftest import TWO_BY_TWO

# Case -> (strategy, its extra --set overrides: non-default hyperparameters, the layer config entries they set).
CASES = {
    "graddrop": ("graddrop", ["weighting.graddrop_leak=0.1"], {"leak": 0.1}),
    "gradvac": ("gradvac", ["weighting.gradvac_beta=0.25"], {"beta": 0.25}),
    "db_mtl": (
        "db_mtl",
        ["weighting.db_mtl_beta=0.8", "weighting.db_mtl_beta_sigma=0.5"],
        {"beta": 0.8, "beta_sigma": 0.5},
    ),
    "famo": ("famo", ["weighting.famo_learning_rate=0.05"], {"learning_rate": 0.05, "update": "same_batch"}),
    "famo_next_batch": ("famo", ["weighting.famo_update=next_batch"], {"update": "next_batch"}),
}

LEARNED_STATE = {"gradvac": "targets", "db_mtl": "ema", "famo": "logits"}


# db_mtl and famo (their own plumbing) train by default, the others with `pytest -m slow` (10-30 s each on 2
# cores); every strategy's .keras round trip after a step is in the default run (tests/weighting/test_weighting.py).
TRAIN_CASES = [pytest.param(c, marks=() if c in ("db_mtl", "famo") else pytest.mark.slow) for c in sorted(CASES)]
# The absent-task check by default for the stateful gradient strategies, the others with -m slow.
ABSENT_CASES = [pytest.param(c, marks=() if c in ("db_mtl", "gradvac") else pytest.mark.slow) for c in sorted(CASES)]


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_trains_reloads_and_exports(tmp_path, tiny_config_factory, case):
    strategy, overrides, settings = CASES[case]
    config = tiny_config_factory(*TWO_BY_TWO, f"weighting.strategy={strategy}", *overrides)
    result = train(config, output_dir=tmp_path / "run", export_dir=tmp_path / "models", verbose=0)
    assert np.isfinite(result.history["loss"]).all()
    assert set(result.history) >= {"weight_premium", "weight_price", "premium_loss", "price_loss"}
    raw = result.preprocessor.raw_inputs(load_splits(config)["test"])
    inputs = result.preprocessor.transform(raw)
    expected = result.model.predict(inputs, verbose=0)

    # The training model's .keras file: equal outputs, equal strategy state, equal configuration.
    trained = result.training_model
    path = tmp_path / "training.keras"
    trained.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.weighting) is type(trained.weighting)
    assert loaded.weighting.get_config() == trained.weighting.get_config()
    assert {key: trained.weighting.get_config()[key] for key in settings} == settings
    state = LEARNED_STATE.get(strategy)
    if state is not None:  # two steps moved it from its zeros
        assert np.abs(keras.ops.convert_to_numpy(getattr(trained.weighting, state))).max() > 0, state
    for before, after in zip(trained.weighting.weights, loaded.weighting.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(before), keras.ops.convert_to_numpy(after))
    reloaded = loaded.predict(inputs, verbose=0)
    for task in ("premium", "price"):
        np.testing.assert_allclose(reloaded[task], expected[task], rtol=1e-6, atol=1e-6)

    serving = tf.saved_model.load(str(result.export_path)).signatures["serving_default"]
    outputs = serving(**{name: tf.constant(values) for name, values in raw.items()})
    assert sorted(outputs) == ["premium", "price"]
    for task in ("premium", "price"):
        np.testing.assert_allclose(outputs[task].numpy(), expected[task], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ABSENT_CASES)
def test_an_absent_task_gets_no_gradient_and_does_not_poison_the_others(weighting_batch, tiny_config_factory, case):
    _, preprocessor, inputs, targets, masks = weighting_batch
    strategy, overrides, _ = CASES[case]
    config = tiny_config_factory(f"weighting.strategy={strategy}", *overrides)
    keras.utils.set_random_seed(0)
    model = compile_model(build_model(config, preprocessor), config, preprocessor, {t: 1.0 for t in config.tasks})
    masks = {**masks, "price": np.zeros_like(masks["price"])}
    head = model.network.get_layer("head_price")
    before = [np.array(w) for w in head.get_weights()]
    trunk = model.network.get_layer("sharing").trunk
    shared_before = [np.array(w) for w in trunk.get_weights()]
    for _ in range(2):  # the second step reads the state the first one left
        logs = model.train_on_batch(inputs, targets, sample_weight=masks, return_dict=True)
        assert np.isfinite(logs["loss"]) and logs["price_loss"] == 0.0
    for old, new in zip(before, head.get_weights()):
        np.testing.assert_array_equal(old, new)  # no gradient reached the absent task's head
    assert any(not np.array_equal(a, b) for a, b in zip(shared_before, trunk.get_weights()))
    for variable in model.weighting.weights:
        assert np.isfinite(keras.ops.convert_to_numpy(variable)).all(), variable.path


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("weighting.graddrop_leak=1.5", "weighting.graddrop_leak"),
        ("weighting.gradvac_beta=-0.1", "weighting.gradvac_beta"),
        ("weighting.db_mtl_beta=1.0", "weighting.db_mtl_beta"),
        ("weighting.db_mtl_beta_sigma=-1", "weighting.db_mtl_beta_sigma"),
        ("weighting.famo_learning_rate=0", "weighting.famo_learning_rate"),
        ("weighting.famo_gamma=-0.001", "weighting.famo_gamma"),
        ("weighting.famo_update=same_bach", "weighting.famo_update"),
        ("weighting.temperature=0", "weighting.temperature"),
        ("weighting.alpha=-1", "weighting.alpha"),
        ("weighting.gradnorm_learning_rate=0", "weighting.gradnorm_learning_rate"),
        ("weighting.cagrad_c=-0.1", "weighting.cagrad_c"),
    ],
)
def test_bad_hyperparameters_name_their_key(tiny_config_factory, override, key):
    with pytest.raises(ConfigError) as raised:
        tiny_config_factory(override)
    assert key in str(raised.value)
    if override.endswith("same_bach"):
        assert "did you mean 'same_batch'" in str(raised.value)
    else:
        assert f"got {override.partition('=')[2]}" in str(raised.value) and "e.g. " in str(raised.value)


def test_every_strategy_checks_keys_of_the_weighting_block_and_one_strategy_owns_each():
    """Each strategy declares its own weighting.* keys (`config_class`) and their bounds (`checks`)."""
    import dataclasses

    from keras_mtmm.registry import WEIGHTINGS

    owners = {}
    for name in WEIGHTINGS.names():
        strategy = WEIGHTINGS.get(name)
        keys = [f.name for f in dataclasses.fields(strategy.config_class)] if strategy.config_class else []
        for setting in strategy.checks:
            assert setting.key in keys, (name, setting.key)
        for key in keys:
            assert owners.setdefault(key, name) == name, key
    assert len(owners) == 11
