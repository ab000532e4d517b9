"""IMTL-G's weights: equal projections on every unit gradient, LibMTL's closed form, any scale, XLA."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.weighting import aggregators
from keras_mtmm.weighting.imtl import imtl_weights


def _closed_form(g: np.ndarray) -> np.ndarray:
    """The paper's closed form as LibMTL computes it, on the vectors, float64: α_{2..T} = g_1 Uᵀ (D Uᵀ)⁻¹."""
    u = g / np.linalg.norm(g, axis=1, keepdims=True)
    d, uu = g[:1] - g[1:], u[:1] - u[1:]
    rest = g[0] @ uu.T @ np.linalg.inv(d @ uu.T)
    return np.concatenate([[1 - rest.sum()], rest])


def _weights(g, dtype=tf.float64, present=None):
    return aggregators.imtl(tf.constant(g, dtype), present=present)[1].numpy().astype(np.float64)


def _projections(g, alpha):
    return (alpha @ g) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T


def test_by_hand():
    # g1 = [1, 0], g2 = [0, 2]: d = [α1, 2α2] with α1 = 2α2 and α1 + α2 = 1: α = [2/3, 1/3], d = [2/3, 2/3].
    direction, weights = aggregators.imtl(np.array([[1.0, 0.0], [0.0, 2.0]]))
    np.testing.assert_allclose(weights.numpy(), [2 / 3, 1 / 3], rtol=1e-12)
    np.testing.assert_allclose(direction.numpy(), [2 / 3, 2 / 3], rtol=1e-12)


CASES = [(tasks, scale) for tasks in (2, 3, 5) for scale in (1e-3, 1.0, 1e3)]


@pytest.mark.parametrize(("tasks", "scale", "seed"), [(*case, i) for i, case in enumerate(CASES)])
def test_the_weights_equal_the_closed_form_and_project_equally(tasks, scale, seed):
    rng = np.random.default_rng(seed)
    g = scale * rng.normal(size=(tasks, 9)) * np.exp(rng.uniform(-1, 1, size=(tasks, 1)))
    for dtype, tolerance in ((tf.float64, 1e-9), (tf.float32, 1e-4)):
        data = g.astype(dtype.as_numpy_dtype).astype(np.float64)
        reference = _closed_form(data)
        alpha = _weights(data, dtype)
        np.testing.assert_allclose(alpha, reference, rtol=tolerance, atol=tolerance * np.abs(reference).max())
        assert alpha.sum() == pytest.approx(1.0, abs=tolerance)
        projections = _projections(data, alpha)
        np.testing.assert_allclose(projections, projections[0], rtol=tolerance)  # the defining property
        assert projections[0] > 0


def test_scaling_the_gradients_leaves_the_weights_unchanged():
    g = np.random.default_rng(7).normal(size=(4, 3))
    expected = _weights(g)
    for scale in (1e-6, 1e-3, 1e3, 1e6):
        np.testing.assert_allclose(_weights(scale * g), expected, rtol=1e-9)


def test_degenerate_gradients():
    # Identical or parallel gradients: every α with Σα = 1 is impartial; the smallest is the mean.
    np.testing.assert_allclose(_weights(np.tile([[1.0, 2.0]], (3, 1))), [1 / 3] * 3, atol=1e-7)
    np.testing.assert_allclose(_weights(np.array([[1.0, 0.0], [2.0, 0.0]])), [0.5, 0.5], atol=1e-7)
    # Opposite gradients: a regular system, d = 0 projects equally (0) on both.
    np.testing.assert_allclose(_weights(np.array([[1.0, 0.0], [-3.0, 0.0]])), [0.75, 0.25], atol=1e-12)
    # No α projects equally (g3 on the affine hull of g1 ⊥ g2): the most impartial d = [1/2, 1/2], smallest α.
    alpha = _weights(np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]))
    np.testing.assert_allclose(alpha, [1 / 3] * 3, atol=1e-6)


def test_absent_tasks_and_zero_gradients_are_left_out():
    rng = np.random.default_rng(2)
    g = rng.normal(size=(4, 5))
    alpha = _weights(g, present=[1, 1, 0, 1])
    assert alpha[2] == 0.0
    np.testing.assert_allclose(alpha[[0, 1, 3]], _weights(g[[0, 1, 3]]), rtol=1e-12)
    with_zero = np.concatenate([g[:2], np.zeros((1, 5))])
    np.testing.assert_allclose(_weights(with_zero), [*_weights(g[:2]), 0.0], rtol=1e-12)
    np.testing.assert_allclose(_weights(g, present=[0, 0, 1, 0]), [0, 0, 1, 0])
    assert not _weights(np.zeros((3, 2))).any()


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_the_same_weights_inside_tf_function_and_xla(dtype):
    g = tf.constant(np.random.default_rng(3).normal(size=(5, 7)), dtype)
    present = tf.constant([1, 0, 1, 1, 1], dtype)
    eager = aggregators.imtl(g, present=present)[1].numpy()
    for compiled in (tf.function(aggregators.imtl), tf.function(aggregators.imtl, jit_compile=True)):
        np.testing.assert_allclose(compiled(g, present=present)[1].numpy(), eager, rtol=1e-6)
    wide = tf.cast(g, tf.float64)
    direct = imtl_weights(tf.matmul(wide, wide, transpose_b=True), tf.cast(present, tf.float64)).numpy()
    np.testing.assert_allclose(eager, direct, rtol=1e-6)
    singular = tf.constant([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]], dtype)  # the fallback path compiles too
    np.testing.assert_allclose(
        tf.function(aggregators.imtl, jit_compile=True)(singular)[1].numpy(),
        aggregators.imtl(singular)[1].numpy(),
        atol=1e-6,
    )
