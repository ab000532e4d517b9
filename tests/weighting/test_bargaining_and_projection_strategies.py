"""nash_mtl, imtl, upgrad, aligned_mtl as training strategies: a real step, 2 trained steps, reload, export."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.data.tables import load_splits
from keras_mtmm.models.multitask import compile_model
from keras_mtmm.models.network import build_model
from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.run_folder import load_checkpoint
from keras_mtmm.training.run import train
from keras_mtmm.weighting import IMTL, AlignedMTL, NashMTL, UPGrad, aggregators
from tests.weighting.test_sharing_weighting_matrix import TWO_BY_TWO

STRATEGIES = ["nash_mtl", "imtl", "upgrad", "aligned_mtl"]
CLASSES = {"nash_mtl": NashMTL, "imtl": IMTL, "upgrad": UPGrad, "aligned_mtl": AlignedMTL}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_registered_round_trips_and_computes_what_its_aggregator_does(strategy):
    layer = WEIGHTINGS.get(strategy, "weighting.strategy")(["a", "b", "c"], [1.0, 2.0, 0.5])
    assert type(layer) is CLASSES[strategy]
    again = type(layer).from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    rng = np.random.default_rng(0)
    gradients = tf.constant(rng.normal(size=(3, 6)) + rng.normal(size=6), tf.float32)
    present = tf.constant([1.0, 0.0, 1.0])
    shared, weights = layer.shared_gradient(gradients, tf.ones([3]), present)
    if strategy == "aligned_mtl":
        # It gets the gradients of w_i·L_i, aligns those of L_i and applies w as the task importances.
        base = tf.constant([1.0, 2.0, 0.5])
        expected, alpha = aggregators.aligned_mtl(gradients / base[:, None], task_weights=base, present=present)
        expected_weights = alpha / base
    else:
        expected, expected_weights = getattr(aggregators, strategy)(gradients, present=present)
    np.testing.assert_allclose(shared.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights.numpy(), expected_weights.numpy(), rtol=1e-5, atol=1e-6)
    assert weights.numpy()[1] == 0.0


# The same plumbing (GradientWeighting) for all but aligned_mtl, which rescales the gradients itself: the
# others in the slow run (10-15 s each on 2 cores); their masking is tested on G in each *_exact file.
IN_A_STEP = [pytest.param(s, marks=() if s == "aligned_mtl" else pytest.mark.slow) for s in STRATEGIES]


@pytest.mark.parametrize("strategy", IN_A_STEP)
def test_an_absent_task_gets_no_gradient_and_the_others_still_train(weighting_batch, tiny_config_factory, strategy):
    _, preprocessor, inputs, targets, masks = weighting_batch
    config = tiny_config_factory(f"weighting.strategy={strategy}")
    keras.utils.set_random_seed(0)
    model = compile_model(build_model(config, preprocessor), config, preprocessor, {t: 1.0 for t in config.tasks})
    masks = {**masks, "price": np.zeros_like(masks["price"])}
    head = model.network.get_layer("head_price")
    before = [np.array(w) for w in head.get_weights()]
    trunk = model.network.get_layer("sharing").trunk
    shared_before = [np.array(w) for w in trunk.get_weights()]
    logs = model.train_on_batch(inputs, targets, sample_weight=masks, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["price_loss"] == 0.0
    for old, new in zip(before, head.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert any(not np.array_equal(a, b) for a, b in zip(shared_before, trunk.get_weights()))


# One whole run (train, .keras, export) by default; the others with -m slow (10-16 s each). Every strategy's
# .keras round trip after a step is in the default run (tests/weighting/test_weighting.py).
WHOLE_RUN = [pytest.param(s, marks=() if s == "aligned_mtl" else pytest.mark.slow) for s in STRATEGIES]


@pytest.mark.parametrize("strategy", WHOLE_RUN)
def test_trains_reloads_and_exports(tmp_path, tiny_config_factory, strategy):
    config = tiny_config_factory(*TWO_BY_TWO, f"weighting.strategy={strategy}")
    result = train(config, output_dir=tmp_path / "run", export_dir=tmp_path / "models", verbose=0)
    assert np.isfinite(result.history["loss"]).all()
    assert np.isfinite(result.history["weight_premium"]).all() and np.isfinite(result.history["weight_price"]).all()
    raw = result.preprocessor.raw_inputs(load_splits(config)["test"])
    features = result.preprocessor.transform(raw)
    expected = result.model.predict(features, verbose=0)
    reloaded = load_checkpoint(result.run_dir / "best.keras")
    assert type(reloaded.weighting) is CLASSES[strategy]
    checkpoint = reloaded.network.predict(features, verbose=0)
    serving = tf.saved_model.load(str(result.export_path)).signatures["serving_default"]
    served = serving(**{name: tf.constant(values) for name, values in raw.items()})
    assert sorted(served) == ["premium", "price"]
    for task in ("premium", "price"):
        np.testing.assert_allclose(checkpoint[task], expected[task], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(served[task].numpy(), expected[task], rtol=1e-5, atol=1e-5)
