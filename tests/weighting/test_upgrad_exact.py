"""UPGrad's weights: exact projections onto the dual cone, against an independent solver, any scale, XLA."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.weighting import aggregators
from keras_mtmm.weighting.upgrad import upgrad_weights


def _reference_projection(g: np.ndarray, i: int) -> np.ndarray:
    """v_i = argmin_{v ≥ e_i} vᵀKv by accelerated projected gradient (FISTA), float64, to convergence."""
    k = g @ g.T
    lower = np.eye(len(g))[i]
    step = 1.0 / max(2 * np.linalg.eigvalsh(k).max(), 1e-300)
    v = y = lower.copy()
    t = 1.0
    for _ in range(500_000):
        nxt = np.maximum(y - step * 2 * k @ y, lower)
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        y = nxt + (t - 1) / t_next * (nxt - v)
        if np.abs(nxt - v).max() < 1e-16:
            return nxt
        v, t = nxt, t_next
    raise AssertionError("the reference did not converge")


def _weights(g, dtype=tf.float64, present=None):
    return aggregators.upgrad(tf.constant(g, dtype), present=present)[1].numpy().astype(np.float64)


def test_two_tasks_in_closed_form():
    # With g1·g2 = c < 0, π(g1) = g1 − c/‖g2‖² g2 (the half-space g2·x ≥ 0): weights ½[1 − c/‖g1‖², 1 − c/‖g2‖²].
    g = np.array([[1.0, 0.0], [-1.0, 1.0]])
    np.testing.assert_allclose(_weights(g), [1.0, 0.75], rtol=1e-12)
    g = np.array([[2.0, 0.0], [1.0, 1.0]])  # no conflict: the mean
    np.testing.assert_allclose(_weights(g), [0.5, 0.5], rtol=1e-12)
    g = np.array([[1.0, 0.0], [-3.0, 0.0]])  # opposite: only d = 0 harms neither
    np.testing.assert_allclose(_weights(g) @ g, [0.0, 0.0], atol=1e-12)


CASES = [(tasks, scale) for tasks in (2, 3, 5) for scale in (1e-3, 1.0, 1e3)]


@pytest.mark.parametrize(("tasks", "scale", "seed"), [(*case, i) for i, case in enumerate(CASES)])
def test_the_weights_equal_an_independent_solver_and_harm_no_task(tasks, scale, seed):
    rng = np.random.default_rng(seed)
    g = scale * rng.normal(size=(tasks, 6)) * np.exp(rng.uniform(-1, 1, size=(tasks, 1)))
    for dtype, tolerance in ((tf.float64, 1e-9), (tf.float32, 1e-4)):
        data = g.astype(dtype.as_numpy_dtype).astype(np.float64)
        reference = np.mean([_reference_projection(data, i) for i in range(tasks)], axis=0)
        alpha = _weights(data, dtype)
        np.testing.assert_allclose(alpha, reference, rtol=tolerance)
        d = alpha @ data
        assert (data @ d >= -tolerance * scale**2).all()  # no conflict with any task
    assert (g @ g.T < 0).any() == (np.abs(alpha - 1 / tasks) > 1e-6).any()  # projections act exactly on conflicts


def test_the_reference_projections_satisfy_the_optimality_conditions():
    # So that the comparison above means something: π(g_i) = Gᵀv_i is feasible (Gπ >= 0), and
    # g_i − π(g_i) = −Gᵀ(v_i − e_i) with v_i − e_i >= 0 vanishing where G π(g_i) > 0.
    g = np.random.default_rng(12).normal(size=(5, 4))
    for i in range(5):
        v = _reference_projection(g, i)
        projection = v @ g
        multipliers = v - np.eye(5)[i]
        assert (g @ projection >= -1e-9).all() and (multipliers >= 0).all()
        np.testing.assert_allclose(multipliers * (g @ projection), 0.0, atol=1e-7)
    alpha = _weights(g)
    np.testing.assert_allclose(alpha, np.mean([_reference_projection(g, i) for i in range(5)], axis=0), rtol=1e-9)
    assert alpha.min() >= 1 / 5 - 1e-12


def test_scaling_the_gradients_leaves_the_weights_unchanged():
    g = np.random.default_rng(7).normal(size=(4, 3))
    expected = _weights(g)
    for scale in (1e-6, 1e-3, 1e3, 1e6):
        np.testing.assert_allclose(_weights(scale * g), expected, rtol=1e-9)


def test_rank_deficient_gradients():
    # Five gradients in a plane (rank 2), and duplicates: the projections are still exact.
    g = np.random.default_rng(4).normal(size=(5, 2))
    reference = np.mean([_reference_projection(g, i) @ g for i in range(5)], axis=0)
    np.testing.assert_allclose(_weights(g) @ g, reference, atol=1e-9)
    g = np.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 1.0]])
    reference = np.mean([_reference_projection(g, i) @ g for i in range(3)], axis=0)
    np.testing.assert_allclose(_weights(g) @ g, reference, atol=1e-9)


def test_absent_tasks_and_zero_gradients():
    g = np.array([[1.0, 0.0], [-1.0, 1.0], [-5.0, -5.0]])
    np.testing.assert_allclose(_weights(g, present=[1, 1, 0]), [1.0, 0.75, 0.0], rtol=1e-12)
    # A zero gradient constrains nothing and projects to 0; the mean is over all 3 tasks.
    with_zero = np.array([[1.0, 0.0], [-1.0, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(_weights(with_zero) @ with_zero, (2 / 3) * (np.array([1.0, 0.75]) @ g[:2]))
    assert not _weights(g, present=[0, 0, 0]).any()


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_the_same_weights_inside_tf_function_and_xla(dtype):
    g = tf.constant(np.random.default_rng(3).normal(size=(5, 7)), dtype)
    present = tf.constant([1, 1, 0, 1, 1], dtype)
    eager = aggregators.upgrad(g, present=present)[1].numpy()
    for compiled in (tf.function(aggregators.upgrad), tf.function(aggregators.upgrad, jit_compile=True)):
        np.testing.assert_allclose(compiled(g, present=present)[1].numpy(), eager, rtol=1e-6)
    wide = tf.cast(g, tf.float64)
    direct = upgrad_weights(tf.matmul(wide, wide, transpose_b=True), tf.cast(present, tf.float64)).numpy()
    np.testing.assert_allclose(eager, direct, rtol=1e-6)
