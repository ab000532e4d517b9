"""GradDrop: hand-computed cases, a NumPy re-implementation of Eq. 1–3 with the same draws, limits, XLA."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.weighting import GradDrop, aggregators


def _reference(g: np.ndarray, uniform: np.ndarray, leak=0.0) -> np.ndarray:
    """The paper's Eq. 1–3 coordinate by coordinate, float64, written out with loops."""
    tasks, size = g.shape
    leak = np.broadcast_to(np.asarray(leak, float), [tasks])
    out = np.zeros(size)
    for k in range(size):
        column = g[:, k]
        absolute = np.abs(column).sum()
        purity = 0.5 * (1 + column.sum() / absolute) if absolute > 0 else 0.5
        for i in range(tasks):
            keep = (purity > uniform[k] and column[i] > 0) or (purity < uniform[k] and column[i] < 0)
            out[k] += (leak[i] + (1 - leak[i]) * float(keep)) * column[i]
    return out


def test_by_hand():
    # Column 0: both positive, P = 1: both kept, 4. Column 1: -2 and 1, P = ½(1 − 1/3) = 1/3:
    # U = 0.5 > P keeps the negative (-2), U = 0.2 < P keeps the positive (1).
    g = np.array([[1.0, -2.0], [3.0, 1.0]])
    np.testing.assert_allclose(aggregators.graddrop(g, uniform=[0.5, 0.5])[0].numpy(), [4.0, -2.0])
    np.testing.assert_allclose(aggregators.graddrop(g, uniform=[0.5, 0.2])[0].numpy(), [4.0, 1.0])
    # A leak of 0.25 lets a quarter of the dropped value through: 1 + 0.25·(-2) = 0.5.
    np.testing.assert_allclose(aggregators.graddrop(g, leak=0.25, uniform=[0.5, 0.2])[0].numpy(), [4.0, 0.5])
    assert aggregators.graddrop(g, uniform=[0.5, 0.2])[1] is None


CASES = [(tasks, scale) for tasks in (2, 3, 5) for scale in (1e-3, 1.0, 1e3)]


@pytest.mark.parametrize(("tasks", "scale", "seed"), [(*case, i) for i, case in enumerate(CASES)])
@pytest.mark.parametrize("leak", [0.0, 0.3])
def test_equals_the_papers_equations_at_every_scale(tasks, scale, seed, leak):
    rng = np.random.default_rng(seed)
    g = scale * rng.normal(size=(tasks, 40))
    uniform = rng.uniform(size=40)
    expected = _reference(g, uniform, leak)
    for dtype, tolerance in ((tf.float64, 1e-12), (tf.float32, 1e-5)):
        direction, _ = aggregators.graddrop(tf.constant(g, dtype), leak=leak, uniform=tf.constant(uniform, dtype))
        np.testing.assert_allclose(direction.numpy(), expected, rtol=tolerance, atol=tolerance * scale)
    # The draws decide, not the scale: the same mask at scale 1.
    unit = aggregators.graddrop(g / scale, leak=leak, uniform=uniform)[0].numpy()
    np.testing.assert_allclose(unit * scale, expected, rtol=1e-12, atol=1e-12 * scale)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_agreeing_signs_give_the_plain_sum_and_a_full_leak_too(scale):
    rng = np.random.default_rng(7)
    signs = np.sign(rng.normal(size=30))
    g = scale * np.abs(rng.normal(size=(3, 30))) * signs  # every column has one sign across tasks
    for seed in range(3):
        np.testing.assert_allclose(aggregators.graddrop(g, seed=seed)[0].numpy(), g.sum(axis=0), rtol=1e-12)
    conflicting = scale * rng.normal(size=(3, 30))
    np.testing.assert_allclose(aggregators.graddrop(conflicting, leak=1.0, seed=0)[0].numpy(), conflicting.sum(0))
    # With conflicts and no leak, some value is dropped.
    assert not np.allclose(aggregators.graddrop(conflicting, seed=0)[0].numpy(), conflicting.sum(0))


def test_draws_extreme_purities_and_zero_columns():
    # P = 0 (all negative) with the smallest draw, P = 1 with the largest: still kept.
    g = np.array([[-1.0, 2.0, 0.0], [-3.0, 1.0, 0.0]], np.float32)
    draws = np.array([np.finfo(np.float32).tiny, np.nextafter(np.float32(1), np.float32(0)), 0.5], np.float32)
    direction, _ = aggregators.graddrop(g, uniform=draws)
    np.testing.assert_allclose(direction.numpy(), [-4.0, 3.0, 0.0])
    draws = aggregators.graddrop(np.ones((2, 100_000), np.float32), seed=3)[0].numpy()
    np.testing.assert_array_equal(draws, 2.0)  # no draw of exactly 0 or 1 dropped an agreeing column


def test_an_absent_task_changes_nothing():
    rng = np.random.default_rng(4)
    g = rng.normal(size=(3, 20))
    g_absent = g.copy()
    g_absent[2] = -100 * np.sign(g[:2].sum(axis=0))  # would flip every purity
    uniform = rng.uniform(size=20)
    with_absent = aggregators.graddrop(g_absent, uniform=uniform, present=[1, 1, 0])[0].numpy()
    np.testing.assert_allclose(with_absent, aggregators.graddrop(g[:2], uniform=uniform)[0].numpy(), atol=1e-12)


def test_seeded_draws_repeat_and_compile_with_xla():
    g = tf.constant(np.random.default_rng(5).normal(size=(3, 50)), tf.float32)
    eager = aggregators.graddrop(g, seed=11)[0].numpy()
    np.testing.assert_array_equal(aggregators.graddrop(g, seed=11)[0].numpy(), eager)
    assert not np.array_equal(aggregators.graddrop(g, seed=12)[0].numpy(), eager)
    uniform = tf.constant(np.random.default_rng(6).uniform(size=50), tf.float32)
    expected = _reference(g.numpy().astype(float), uniform.numpy().astype(float))
    for jit in (False, True):
        compiled = tf.function(lambda x, u: aggregators.graddrop(x, uniform=u)[0], jit_compile=jit)
        np.testing.assert_allclose(compiled(g, uniform).numpy(), expected, rtol=1e-5, atol=1e-6)
        seeded = tf.function(lambda x: aggregators.graddrop(x, seed=11)[0], jit_compile=jit)
        np.testing.assert_allclose(seeded(g).numpy(), eager, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="leak must be in"):
        aggregators.graddrop(g, leak=1.5)


def test_the_strategy_draws_fresh_masks_and_records_present_tasks():
    strategy = GradDrop(["a", "b", "c"], leak=0.2, seed=1)
    strategy.build(None)
    g = tf.constant(np.random.default_rng(8).normal(size=(3, 64)), tf.float32)
    present = tf.constant([1.0, 1.0, 0.0])
    first, weights = strategy.shared_gradient(g, tf.ones(3), present)
    second, _ = strategy.shared_gradient(g, tf.ones(3), present)
    np.testing.assert_array_equal(weights.numpy(), [1.0, 1.0, 0.0])
    assert not np.array_equal(first.numpy(), second.numpy())  # a new draw every step
    # Every result is one of the paper's masks: each coordinate is a kept-or-leaked sum of the present rows.
    kept = (first.numpy() - 0.2 * g.numpy()[:2].sum(0)) / 0.8
    columns = g.numpy()[:2]
    candidates = np.stack([np.where(columns > 0, columns, 0).sum(0), np.where(columns < 0, columns, 0).sum(0)])
    assert np.all(np.min(np.abs(candidates - kept), axis=0) < 1e-5)
    assert GradDrop.from_config(strategy.get_config()).get_config() == strategy.get_config()
    with pytest.raises(ValueError, match="leak must be in"):
        GradDrop(["a", "b"], leak=-0.1)
