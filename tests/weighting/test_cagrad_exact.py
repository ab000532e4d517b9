"""CAGrad's direction is exact: the issue's case at every scale, optimality (KKT), an independent search, XLA."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.weighting.cagrad import cagrad_direction


def _direction(g: np.ndarray, c: float, dtype=tf.float64, present=None):
    present = np.ones(len(g)) if present is None else np.asarray(present, float)
    d, coefficients = cagrad_direction(tf.constant(g, dtype), tf.constant(present, dtype), c)
    return d.numpy().astype(np.float64), coefficients.numpy().astype(np.float64)


def _objective(w: np.ndarray, g: np.ndarray, c: float) -> float:
    g0 = g.mean(axis=0)
    gw = w @ g
    return float(gw @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(gw))


def _golden(f, low: float, high: float, steps: int = 90) -> float:
    ratio = (np.sqrt(5) - 1) / 2
    a, b = low, high
    for _ in range(steps):
        x1, x2 = b - ratio * (b - a), a + ratio * (b - a)
        if f(x1) < f(x2):
            b = x2
        else:
            a = x1
    return (a + b) / 2


def _reference_weights(g: np.ndarray, c: float) -> np.ndarray:
    """argmin over the simplex by nested golden-section search (the objective is convex), T = 2 or 3."""
    if len(g) == 2:
        w1 = _golden(lambda x: _objective(np.array([x, 1 - x]), g, c), 0.0, 1.0)
        return np.array([w1, 1 - w1])

    def inner(w1: float) -> tuple[float, float]:
        w2 = _golden(lambda x: _objective(np.array([w1, x, 1 - w1 - x]), g, c), 0.0, 1.0 - w1)
        return w2, _objective(np.array([w1, w2, 1 - w1 - w2]), g, c)

    w1 = _golden(lambda x: inner(x)[1], 0.0, 1.0)
    w2 = inner(w1)[0]
    return np.array([w1, w2, 1 - w1 - w2])


def _cagrad_from_weights(w: np.ndarray, g: np.ndarray, c: float) -> np.ndarray:
    g0, gw = g.mean(axis=0), w @ g
    return g0 + c * np.linalg.norm(g0) / np.linalg.norm(gw) * gw


@pytest.mark.parametrize("scale", [1e-3, 0.1, 1.0, 10.0, 1e3])
def test_the_case_the_issue_reported_at_every_scale(scale):
    # G = s·[[-3, -2], [3, 1]], c = 0.5: d / s = [0.25, -0.5] for every s (the old solver: [0.144, -0.704] at 0.1).
    g = scale * np.array([[-3.0, -2.0], [3.0, 1.0]])
    for dtype, tolerance in ((tf.float64, 1e-12), (tf.float32, 1e-6)):
        d, coefficients = _direction(g, 0.5, dtype)
        np.testing.assert_allclose(d / scale, [0.25, -0.5], atol=tolerance)
        np.testing.assert_allclose(coefficients @ g, d, rtol=1e-5, atol=1e-5 * scale)


CASES = [(tasks, rank, scale) for tasks in (2, 3, 5) for rank in (1, 2, 8) for scale in (1e-3, 1.0, 1e3)]


@pytest.mark.parametrize(("tasks", "rank", "scale", "seed"), [(*case, i) for i, case in enumerate(CASES)])
def test_the_direction_is_optimal(tasks, rank, scale, seed):
    rng = np.random.default_rng(seed)
    g = scale * (rng.normal(size=(tasks, rank)) @ rng.normal(size=(rank, 10)) + 0.5 * rng.normal(size=10))
    c = 0.5
    mean_norm = np.linalg.norm(g, axis=1).mean()
    d, coefficients = _direction(g, c)
    g0 = g.mean(axis=0)
    # The coefficients are m + step·w: recover w and check the KKT conditions of the inner problem.
    w = coefficients - 1.0 / tasks
    assert w.min() >= -1e-9 * max(1.0, w.max()), coefficients
    w = np.maximum(w, 0) / w.sum()
    k = g @ g.T
    gradient = k @ np.full(tasks, 1.0 / tasks) + c * np.linalg.norm(g0) * (k @ w) / np.linalg.norm(w @ g)
    assert gradient.min() >= gradient @ w - 1e-7 * mean_norm**2, (gradient, w)
    np.testing.assert_allclose(d, _cagrad_from_weights(w, g, c), atol=1e-9 * mean_norm)
    # Its defining properties: within the ball around g0, and the best worst-task decrease there.
    assert np.linalg.norm(d - g0) <= c * np.linalg.norm(g0) * (1 + 1e-9)
    if tasks <= 3:
        reference = _cagrad_from_weights(_reference_weights(g, c), g, c)
        assert np.linalg.norm(d - reference) / mean_norm < 1e-4, (d, reference)
    for dtype, tolerance in ((tf.float32, 1e-4),):
        d32, _ = _direction(g.astype(np.float32), c, dtype)
        assert np.linalg.norm(d32 - d) / mean_norm < tolerance


def test_scaling_the_gradients_scales_the_direction():
    g = np.random.default_rng(5).normal(size=(4, 6))
    expected, _ = _direction(g, 0.4)
    for scale in (1e-6, 1e-3, 1e3, 1e6):
        np.testing.assert_allclose(_direction(scale * g, 0.4)[0], scale * expected, rtol=1e-9, atol=1e-12 * scale)


def test_edge_cases_give_no_nan():
    g = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    d, coefficients = _direction(g, 0.5, present=[1, 1, 0])
    assert coefficients[2] == 0.0 and np.isfinite(d).all()
    np.testing.assert_allclose(d, _direction(g[:2], 0.5)[0], atol=1e-12)  # the absent task changes nothing
    np.testing.assert_allclose(_direction(g, 0.0)[0], g.mean(axis=0), atol=1e-12)  # c = 0: the mean
    assert np.isfinite(_direction(np.zeros((3, 2)), 0.5)[0]).all()
    np.testing.assert_allclose(_direction(np.array([[1.0, 2.0], [1.0, 2.0]]), 0.5)[0], [1.5, 3.0], atol=1e-12)
    # A zero gradient puts 0 in the hull: g_w = 0 is optimal and every d of the ball maximises min_i g_i·d.
    np.testing.assert_allclose(_direction(np.array([[1.0, 0.0], [0.0, 0.0]]), 0.5)[0], [0.5, 0.0], atol=1e-12)
    d, _ = _direction(np.array([[1.0, 0.0], [-1.0, 0.0]]), 0.5)  # antiparallel: g0 = 0
    np.testing.assert_allclose(d, [0.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("width", [8, 2])
def test_the_same_direction_inside_tf_function_and_xla(width):
    g = tf.constant(np.random.default_rng(3).normal(size=(5, width)), tf.float32)
    present = tf.ones([5])
    eager = cagrad_direction(g, present, 0.4)[0].numpy()
    for compiled in (tf.function(cagrad_direction), tf.function(cagrad_direction, jit_compile=True)):
        np.testing.assert_allclose(compiled(g, present, 0.4)[0].numpy(), eager, atol=1e-5)
