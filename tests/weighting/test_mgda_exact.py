"""MGDA's min-norm weights are exact: against an independent solver, at any gradient scale, under XLA."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.weighting.mgda import min_norm_weights


def _project_to_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the probability simplex (Duchi et al., ICML 2008)."""
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u)
    rho = np.nonzero(u * np.arange(1, len(v) + 1) > cumulative - 1)[0][-1]
    return np.maximum(v - (cumulative[rho] - 1) / (rho + 1), 0.0)


def _reference_min_norm_point(g: np.ndarray) -> np.ndarray:
    """min ‖Gᵀα‖² over the simplex by accelerated projected gradient (FISTA), float64, to convergence."""
    k = g @ g.T
    step = 1.0 / max(np.linalg.eigvalsh(k).max() * 2, 1e-300)
    alpha = y = np.full(len(g), 1.0 / len(g))
    t = 1.0
    for _ in range(200_000):
        nxt = _project_to_simplex(y - step * 2 * k @ y)
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        y = nxt + (t - 1) / t_next * (nxt - alpha)
        if np.abs(nxt - alpha).max() < 1e-15:
            alpha = nxt
            break
        alpha, t = nxt, t_next
    return alpha @ g


def _weights(g: np.ndarray, dtype=tf.float64, present=None) -> np.ndarray:
    g = tf.constant(g, dtype)
    present = tf.ones([g.shape[0]], dtype) if present is None else tf.constant(present, dtype)
    return min_norm_weights(tf.matmul(g, g, transpose_b=True), present).numpy()


def test_the_edge_optimum_the_issue_reported():
    # Frank–Wolfe gave [0.4908, 0.5001, 0.0091], ‖d‖² = 0.5092; the min-norm point is [0.5, 0.5, 0], ‖d‖² = 0.5.
    g = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(_weights(g), [0.5, 0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(_weights(g, tf.float32), [0.5, 0.5, 0.0], atol=1e-7)


CASES = [(tasks, rank, scale) for tasks in (2, 3, 5) for rank in (1, 2, 8) for scale in (1e-3, 1.0, 1e3)]


@pytest.mark.parametrize(("tasks", "rank", "scale", "seed"), [(*case, i) for i, case in enumerate(CASES)])
def test_the_min_norm_point_equals_an_independent_solver(tasks, rank, scale, seed):
    rng = np.random.default_rng(seed)
    # Rank-deficient gradients (rank < T) and a shared component, so optima fall on faces and edges.
    g = scale * (rng.normal(size=(tasks, rank)) @ rng.normal(size=(rank, 12)) + rng.normal(size=12))
    reference = _reference_min_norm_point(g)
    mean_norm = np.linalg.norm(g, axis=1).mean()
    for dtype, tolerance in ((tf.float64, 1e-6), (tf.float32, 1e-4)):
        alpha = _weights(g.astype(dtype.as_numpy_dtype), dtype)
        assert alpha.min() >= 0 and abs(alpha.sum() - 1) < 1e-6
        d = alpha.astype(np.float64) @ g
        assert np.linalg.norm(d - reference) / mean_norm < tolerance, (alpha, d, reference)
        # KKT: no vertex has a smaller inner product with d than d itself (d·g_i >= ‖d‖² for every i).
        assert (g @ d >= d @ d - 1e-6 * mean_norm**2).all()


def test_scaling_the_gradients_leaves_the_weights_unchanged():
    g = np.random.default_rng(7).normal(size=(4, 3))
    expected = _weights(g)
    for scale in (1e-6, 1e-3, 1e3, 1e6):
        np.testing.assert_allclose(_weights(scale * g), expected, atol=1e-9)


def test_absent_tasks_get_no_weight_and_zero_gradients_no_nan():
    g = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(_weights(g, present=[1, 1, 0]), [0.5, 0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(_weights(np.zeros((3, 2))), [1 / 3] * 3, atol=1e-12)
    np.testing.assert_allclose(_weights(np.zeros((3, 2)), present=[0, 0, 0]), [0.0] * 3)
    np.testing.assert_allclose(_weights(g, present=[0, 1, 0]), [0.0, 1.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("width", [8, 2])
def test_the_same_result_inside_tf_function_and_xla(width):
    # Width 8: one optimal α. Width 2: five gradients in a plane, 0 in their hull: α is not unique, d = 0 is.
    g = tf.constant(np.random.default_rng(3).normal(size=(5, width)), tf.float32)
    gram, present = tf.matmul(g, g, transpose_b=True), tf.ones([5])
    eager = min_norm_weights(gram, present).numpy()
    for compiled in (tf.function(min_norm_weights), tf.function(min_norm_weights, jit_compile=True)):
        alpha = compiled(gram, present).numpy()
        np.testing.assert_allclose(alpha @ g.numpy(), eager @ g.numpy(), atol=1e-6)
        if width == 8:
            np.testing.assert_allclose(alpha, eager, atol=1e-6)
