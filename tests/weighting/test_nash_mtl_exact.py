"""Nash-MTL's weights solve GGᵀα = 1/α exactly: closed forms, an independent solver, any scale, XLA."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.weighting import aggregators
from keras_mtmm.weighting.nash_mtl import nash_weights


def _reference(g: np.ndarray) -> np.ndarray:
    """α by exact coordinate minimisation of ½αᵀMα − Σ log α on M = GGᵀ itself, float64, to convergence.

    For fixed α_j (j ≠ i) the minimiser over α_i solves M_ii α_i² + b_i α_i − 1 = 0, b_i = Σ_{j≠i} M_ij α_j.
    """
    k = g @ g.T
    alpha = 1.0 / np.sqrt(np.diag(k))
    for _ in range(200_000):
        previous = alpha.copy()
        for i in range(len(k)):
            b = k[i] @ alpha - k[i, i] * alpha[i]
            alpha[i] = 2.0 / (b + np.sqrt(b * b + 4 * k[i, i]))  # the positive root, without cancellation
        if np.abs(alpha - previous).max() <= 1e-15 * alpha.max():
            return alpha
    raise AssertionError("the reference did not converge")


def _weights(g, dtype=tf.float64, present=None):
    return aggregators.nash_mtl(tf.constant(g, dtype), present=present)[1].numpy().astype(np.float64)


def _relative_residual(g, alpha):
    k = g.astype(np.float64) @ g.astype(np.float64).T
    return np.abs(k @ alpha - 1 / alpha).max() / np.abs(1 / alpha).max()


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_two_tasks_in_closed_form(scale):
    # Unit gradients with cosine c: α_1 = α_2 = 1/sqrt(1 + c); lengths n_i: α_i = 1/(n_i sqrt(1 + c)).
    for angle in (0.3, 1.2, 2.5):
        g = scale * np.array([[2.0, 0.0], [0.5 * np.cos(angle), 0.5 * np.sin(angle)]])
        expected = 1 / (np.array([2.0, 0.5]) * scale * np.sqrt(1 + np.cos(angle)))
        for dtype, tolerance in ((tf.float64, 1e-12), (tf.float32, 1e-5)):
            alpha = _weights(g, dtype)
            np.testing.assert_allclose(alpha, expected, rtol=tolerance)
            assert np.linalg.norm(alpha @ g) == pytest.approx(np.sqrt(2), rel=tolerance)


def test_identical_and_orthogonal_gradients():
    g = np.tile([[3.0, 4.0]], (3, 1))  # T identical gradients: α_i = 1/(‖g‖ sqrt(T))
    np.testing.assert_allclose(_weights(g), [1 / (5 * np.sqrt(3))] * 3, rtol=1e-12)
    g = np.diag([1.0, 10.0, 0.1])  # orthogonal: α_i = 1/‖g_i‖
    np.testing.assert_allclose(_weights(g), [1.0, 0.1, 10.0], rtol=1e-12)


CASES = [(tasks, scale) for tasks in (2, 3, 5) for scale in (1e-3, 1.0, 1e3)]


@pytest.mark.parametrize(("tasks", "scale", "seed"), [(*case, i) for i, case in enumerate(CASES)])
def test_the_weights_equal_an_independent_solver(tasks, scale, seed):
    rng = np.random.default_rng(seed)
    # A shared component so that a direction improving every task exists; lengths spread over 1e±2.
    g = rng.normal(size=(tasks, 8)) + 1.5 * rng.normal(size=8)
    g = scale * g * np.exp(rng.uniform(-2, 2, size=(tasks, 1)))
    reference = _reference(g)
    for dtype, tolerance in ((tf.float64, 1e-9), (tf.float32, 1e-4)):
        alpha = _weights(g.astype(dtype.as_numpy_dtype), dtype)
        assert alpha.min() > 0
        np.testing.assert_allclose(alpha, reference, rtol=tolerance)
        if dtype == tf.float64:
            assert _relative_residual(g, alpha) <= 1e-8
        d = alpha @ g
        assert d @ d == pytest.approx(tasks, rel=10 * tolerance)  # ‖d‖² = αᵀMα = T at every scale
        assert (g @ d > 0).all()  # the bargaining direction improves every task


def test_more_tasks_than_dimensions_when_a_common_direction_exists():
    # Five gradients in a plane, all within 60° of [1, 0]: the Gram matrix has rank 2, the solution exists.
    angles = np.array([-1.0, -0.4, 0.0, 0.5, 1.0])
    g = np.stack([np.cos(angles), np.sin(angles)], axis=1) * np.array([[1.0], [2.0], [0.5], [3.0], [1.0]])
    alpha = _weights(g)
    assert alpha.min() > 0 and _relative_residual(g, alpha) <= 1e-8
    np.testing.assert_allclose(alpha, _reference(g), rtol=1e-9)


def test_no_solution_where_zero_is_in_the_hull_and_zero_gradients_are_left_out():
    assert not _weights(np.array([[1.0, 0.0], [-2.0, 0.0]])).any()  # opposite: nothing improves both
    assert not _weights(np.array([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])).any()  # 0 inside the triangle
    # A zero gradient has nothing to bargain for: weight 0, the others solved among themselves.
    np.testing.assert_allclose(_weights(np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])), [1.0, 0.5, 0.0])
    assert not _weights(np.zeros((3, 4))).any()


def test_absent_tasks_are_left_out():
    rng = np.random.default_rng(11)
    g = rng.normal(size=(4, 6)) + 2 * rng.normal(size=6)
    alpha = _weights(g, present=[1, 0, 1, 1])
    assert alpha[1] == 0.0
    np.testing.assert_allclose(alpha[[0, 2, 3]], _weights(g[[0, 2, 3]]), rtol=1e-12)
    np.testing.assert_allclose(_weights(g, present=[0, 0, 1, 0]), [0, 0, 1 / np.linalg.norm(g[2]), 0], rtol=1e-12)


def test_the_direction_ignores_each_tasks_gradient_scale():
    rng = np.random.default_rng(5)
    g = rng.normal(size=(3, 5)) + 2 * rng.normal(size=5)
    d = aggregators.nash_mtl(g)[0].numpy()
    scaled = g * np.array([[1e-3], [1.0], [1e3]])
    np.testing.assert_allclose(aggregators.nash_mtl(scaled)[0].numpy(), d, rtol=1e-9)
    np.testing.assert_allclose(aggregators.nash_mtl(1e4 * g)[0].numpy(), d, rtol=1e-9)


def test_nearly_degenerate_problems_are_still_solved():
    # 0 is at distance ~eps from the hull: α grows like 1/eps, the residual stays within rounding.
    for eps in (1e-2, 1e-3, 1e-4):
        g = np.array([[1.0, eps, 0.0], [-1.0, eps, 0.1 * eps], [0.3, eps, -0.5 * eps], [-0.2, 2 * eps, 0.0]])
        alpha = _weights(g)
        assert alpha.min() > 0 and _relative_residual(g, alpha) <= 1e-6, eps


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_the_same_weights_inside_tf_function_and_xla(dtype):
    g = tf.constant(np.random.default_rng(3).normal(size=(5, 7)) + 1.0, dtype)
    present = tf.constant([1, 1, 1, 0, 1], dtype)
    eager = aggregators.nash_mtl(g, present=present)[1].numpy()
    assert eager.min() == 0 and np.count_nonzero(eager) == 4
    for compiled in (tf.function(aggregators.nash_mtl), tf.function(aggregators.nash_mtl, jit_compile=True)):
        np.testing.assert_allclose(compiled(g, present=present)[1].numpy(), eager, rtol=1e-6)
    wide = tf.cast(g, tf.float64)
    direct = nash_weights(tf.matmul(wide, wide, transpose_b=True), tf.cast(present, tf.float64)).numpy()
    np.testing.assert_allclose(eager, direct, rtol=1e-6)
