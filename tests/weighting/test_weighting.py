"""Weighting strategies against their formulas on constructed cases, and inside a real training step."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.models.multitask import compile_model
from keras_mtmm.models.network import build_model
from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.weighting import (
    MGDA,
    CAGrad,
    DynamicWeightAverage,
    GradNorm,
    PCGrad,
    RandomLossWeighting,
    StaticWeighting,
    UncertaintyWeighting,
)
from keras_mtmm.weighting.cagrad import cagrad_direction
from keras_mtmm.weighting.dwa import dwa_weights
from keras_mtmm.weighting.gradnorm import gradnorm_weight_gradient, renormalize
from keras_mtmm.weighting.mgda import min_norm_weights
from keras_mtmm.weighting.pcgrad import project_conflicting

ORDER = tf.constant([0, 1])


def test_pcgrad_projects_conflicting_gradients():
    # g1 = [1, 0], g2 = [-1, 1]: g1·g2 = -1 < 0.
    # g1' = g1 - (g1·g2 / |g2|²) g2 = [1, 0] + 0.5·[-1, 1] = [0.5, 0.5]
    # g2' = g2 - (g2·g1 / |g1|²) g1 = [-1, 1] + 1·[1, 0]   = [0, 1]
    grads = tf.constant([[1.0, 0.0], [-1.0, 1.0]])
    np.testing.assert_allclose(project_conflicting(grads, ORDER).numpy(), [0.5, 1.5], atol=1e-6)
    np.testing.assert_allclose(project_conflicting(grads, tf.constant([1, 0])).numpy(), [0.5, 1.5], atol=1e-6)
    # No conflict: the plain sum.
    agreeing = tf.constant([[1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(project_conflicting(agreeing, ORDER).numpy(), [2.0, 1.0], atol=1e-6)
    # An absent task (zero gradient) changes nothing.
    with_absent = tf.constant([[1.0, 0.0], [-1.0, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(project_conflicting(with_absent, tf.constant([2, 0, 1])).numpy(), [0.5, 1.5], atol=1e-6)


def test_mgda_min_norm_weights():
    def alpha(rows, present=None):
        g = tf.constant(rows, dtype=tf.float32)
        p = tf.ones([len(rows)]) if present is None else tf.constant(present, tf.float32)
        return min_norm_weights(tf.matmul(g, g, transpose_b=True), p).numpy()

    np.testing.assert_allclose(alpha([[1.0, 0.0], [0.0, 1.0]]), [0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(alpha([[1.0, 0.0], [2.0, 0.0]]), [1.0, 0.0], atol=1e-6)  # the shorter one
    # Three tasks: the min-norm point of conv{[1,0],[0,1],[1,1]} is [0.5, 0.5] (more: test_mgda_exact.py).
    a = alpha([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert a.sum() == pytest.approx(1.0, abs=1e-5) and (a >= -1e-7).all()
    combined = a @ np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(combined, [0.5, 0.5], atol=1e-6)
    # An absent task gets no weight, even though its zero gradient has the smallest norm.
    np.testing.assert_allclose(alpha([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], [1, 1, 0]), [0.5, 0.5, 0.0], atol=1e-6)


def test_cagrad_reduces_to_the_mean_at_c_zero_and_helps_the_worst_task():
    grads = tf.constant([[1.0, 0.0], [-0.8, 0.6]])
    present = tf.ones([2])
    g, coefficients = cagrad_direction(grads, present, c=0.0)
    np.testing.assert_allclose(g.numpy(), grads.numpy().mean(axis=0), atol=1e-5)
    g, coefficients = cagrad_direction(grads, present, c=0.5)
    np.testing.assert_allclose(g.numpy(), coefficients.numpy() @ grads.numpy(), atol=1e-5)
    g0 = grads.numpy().mean(axis=0)
    worst = lambda direction: min(grads.numpy() @ direction)  # noqa: E731
    assert worst(g.numpy()) > worst(g0), "CAGrad must improve the worst-off task's first-order decrease"
    assert np.linalg.norm(g.numpy() - g0) <= 0.5 * np.linalg.norm(g0) + 1e-5  # stays within radius c‖g0‖


def test_dwa_weights_follow_the_formula_and_start_at_one():
    # r = L(t-1)/L(t-2) = [1/2, 2/2]; w = 2·softmax(r/2) = 2·softmax([0.25, 0.5])
    expected = 2 * np.exp([0.25, 0.5]) / np.exp([0.25, 0.5]).sum()
    np.testing.assert_allclose(dwa_weights([1.0, 2.0], [2.0, 2.0], temperature=2.0), expected, rtol=1e-6)
    layer = DynamicWeightAverage(["a", "b"], temperature=2.0)
    layer.build()
    layer.on_epoch_end(0, {"a": 2.0, "b": 2.0})
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.current), [1.0, 1.0])  # epochs 1-2: w = 1
    layer.on_epoch_end(1, {"a": 1.0, "b": 2.0})
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.current), expected, rtol=1e-5)
    assert keras.ops.convert_to_numpy(layer.current).sum() == pytest.approx(2.0, rel=1e-5)


def test_uncertainty_loss_equals_the_formula():
    layer = UncertaintyWeighting(["depth", "label"], regression=[True, False])
    layer.build()
    layer.log_variances.assign([0.5, -1.0])
    losses = tf.constant([2.0, 3.0])
    # 0.5·e^-0.5·2 + 0.5·0.5  +  1·e^1·3 + 0.5·(-1)
    expected = 0.5 * np.exp(-0.5) * 2 + 0.25 + np.exp(1.0) * 3 - 0.5
    assert float(layer(losses, tf.constant([1.0, 1.0]))) == pytest.approx(expected, rel=1e-6)
    # An absent task adds neither its loss nor its log-variance term.
    assert float(layer(losses, tf.constant([1.0, 0.0]))) == pytest.approx(0.5 * np.exp(-0.5) * 2 + 0.25, rel=1e-6)


def test_gradnorm_raises_the_weight_of_the_slower_task():
    # Equal gradient norms; task 0's loss has not moved (L/L0 = 1), task 1 halved (0.5).
    # r = [1, 0.5] / 0.75 = [4/3, 2/3]; targets = 1·r^1.5 = [1.54, 0.54]; G = [1, 1]
    # d/dw = sign(G - target)·norm = [-1, +1]  ->  w0 goes up, w1 down.
    step = gradnorm_weight_gradient(
        tf.constant([1.0, 1.0]),
        tf.constant([1.0, 1.0]),
        tf.constant([1.0, 0.5]),
        tf.constant([1.0, 1.0]),
        tf.constant([1.0, 1.0]),
        alpha=1.5,
    )
    np.testing.assert_allclose(step.numpy(), [-1.0, 1.0])
    updated = renormalize(tf.constant([1.0, 1.0]) - 0.1 * step, 2).numpy()
    assert updated[0] > 1.0 > updated[1] and updated.sum() == pytest.approx(2.0)


def test_rlw_weights_are_random_per_step_and_uniform_in_evaluation():
    layer = RandomLossWeighting(["a", "b", "c"], seed=1)
    layer.build()
    losses, present = tf.constant([1.0, 1.0, 1.0]), tf.ones([3])
    first = keras.ops.convert_to_numpy(layer.task_weights(losses, present, training=True))
    second = keras.ops.convert_to_numpy(layer.task_weights(losses, present, training=True))
    assert first.sum() == pytest.approx(1.0, abs=1e-6) and not np.allclose(first, second)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.task_weights(losses, present, training=False)), 1 / 3)


@pytest.mark.parametrize(
    "layer",
    [
        StaticWeighting(["a", "b"], [1.0, 0.5]),
        UncertaintyWeighting(["a", "b"], [True, False]),
        DynamicWeightAverage(["a", "b"], temperature=3.0),
        RandomLossWeighting(["a", "b"], seed=4),
        PCGrad(["a", "b"], [1.0, 2.0], seed=3),
        CAGrad(["a", "b"], c=0.3),
        MGDA(["a", "b"]),
        GradNorm(["a", "b"], alpha=0.5, learning_rate=0.01),
        *[
            WEIGHTINGS.get(name, "weighting.strategy")(["a", "b"], [1.0, 2.0])
            for name in ("nash_mtl", "imtl", "upgrad", "aligned_mtl", "graddrop", "gradvac")
        ],
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_strategy_config_round_trip(layer):
    again = type(layer).from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


def test_bad_strategy_arguments_name_them():
    with pytest.raises(ValueError, match="temperature"):
        DynamicWeightAverage(["a"], temperature=0)
    with pytest.raises(ValueError, match="at least 2 tasks"):
        PCGrad(["a"])
    with pytest.raises(ValueError, match="c must be"):
        CAGrad(["a", "b"], c=-1)


# ---------------------------------------------------------------------------
# Inside a real training step


@pytest.mark.parametrize("strategy", ["uncertainty", "dwa", "rlw", "pcgrad", "cagrad", "mgda", "gradnorm"])
def test_an_absent_task_gets_no_gradient_and_does_not_poison_the_others(weighting_batch, tiny_config_factory, strategy):
    _, preprocessor, inputs, targets, masks = weighting_batch
    config = tiny_config_factory(f"weighting.strategy={strategy}")
    keras.utils.set_random_seed(0)
    model = compile_model(build_model(config, preprocessor), config, preprocessor, {t: 1.0 for t in config.tasks})
    masks = {**masks, "price": np.zeros_like(masks["price"])}
    head = model.network.get_layer("head_price")
    before = [np.array(w) for w in head.get_weights()]
    shared_before = [np.array(w) for w in model.network.get_layer("sharing").trunk.get_weights()]
    logs = model.train_on_batch(inputs, targets, sample_weight=masks, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["price_loss"] == 0.0
    for old, new in zip(before, head.get_weights()):
        np.testing.assert_array_equal(old, new)  # no gradient reached the absent task's head
    changed = [
        not np.array_equal(a, b) for a, b in zip(shared_before, model.network.get_layer("sharing").trunk.get_weights())
    ]
    assert any(changed), "the present tasks still train the shared trunk"


def test_uncertainty_log_variances_are_saved_with_the_model(weighting_batch, tiny_config_factory, tmp_path):
    _, preprocessor, inputs, targets, masks = weighting_batch
    config = tiny_config_factory("weighting.strategy=uncertainty")
    model = compile_model(build_model(config, preprocessor), config, preprocessor, {t: 1.0 for t in config.tasks})
    model.weighting.log_variances.assign([0.3, -0.2, 0.7])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded.weighting.log_variances), [0.3, -0.2, 0.7])
    np.testing.assert_allclose(
        loaded.predict(inputs, verbose=0)["shape"], model.predict(inputs, verbose=0)["shape"], atol=1e-6
    )


def test_gradient_strategies_record_the_pairwise_cosines_of_task_gradients():
    """Two tasks with opposite gradients have cosine -1; the mean is per recorded step."""
    import tensorflow as tf

    from keras_mtmm.weighting import PCGrad

    strategy = PCGrad(["a", "b", "c"], seed=1)
    strategy.build(None)
    gradients = tf.constant([[1.0, 0.0], [-2.0, 0.0], [0.0, 3.0]])
    strategy.record_cosines(gradients)
    strategy.record(tf.ones(3))
    assert strategy.mean_cosines() == pytest.approx({"a__b": -1.0, "a__c": 0.0, "b__c": 0.0})
    strategy.reset_recorded_weights()
    assert strategy.mean_cosines() == {}


def test_every_registered_strategy_builds_from_its_config_block_through_the_registry():
    """`build_weighting` is one registry lookup: each class's `from_settings` passes its own keys."""
    from keras_mtmm.config.schema import WeightingConfig
    from keras_mtmm.registry import WEIGHTINGS
    from keras_mtmm.weighting import build_weighting, gradient_strategies

    types = {"a": "regression", "b": "binary", "c": "multiclass"}
    weights = {"a": 0.5, "b": 1.0, "c": 2.0}
    for name in WEIGHTINGS.names():
        layer = build_weighting(WeightingConfig.of(strategy=name), types, weights, seed=3, num_parameters=10)
        assert type(layer) is WEIGHTINGS.get(name) and layer.name == "weighting" and layer.task_names == list(types)
        if hasattr(layer, "task_weights_list"):
            assert layer.task_weights_list == [0.5, 1.0, 2.0], name
    assert build_weighting(WeightingConfig.of(strategy="cagrad", cagrad_c=0.7), types, weights, 0).c == 0.7
    assert build_weighting(WeightingConfig.of(strategy="dwa", temperature=5.0), types, weights, 0).temperature == 5.0
    assert gradient_strategies() == sorted(
        ["pcgrad", "cagrad", "mgda", "gradnorm", "graddrop", "gradvac", "db_mtl", "nash_mtl", "imtl", "upgrad"]
        + ["aligned_mtl"]
    )
