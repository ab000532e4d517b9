"""Aligned-MTL's weights: LibMTL's computation in NumPy, equal singular values, any scale, XLA."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.weighting import aggregators
from keras_mtmm.weighting.aligned_mtl import aligned_weights, symmetric_eigen


def _libmtl(g: np.ndarray, epsilon: float, w=None) -> tuple[np.ndarray, np.ndarray]:
    """LibMTL's Aligned_MTL on M = GGᵀ with NumPy's eigh, float64: (α = B w, B)."""
    m = g @ g.T
    eigenvalues, vectors = np.linalg.eigh(m)
    rank = int((eigenvalues > eigenvalues.max() * len(m) * epsilon).sum())
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, vectors = eigenvalues[order][:rank], vectors[:, order][:, :rank]
    balance = np.sqrt(eigenvalues[-1]) * (vectors / np.sqrt(eigenvalues)) @ vectors.T
    return balance @ (np.ones(len(g)) if w is None else w), balance


def _weights(g, dtype=tf.float64, **kwargs):
    return aggregators.aligned_mtl(tf.constant(g, dtype), **kwargs)[1].numpy().astype(np.float64)


def test_by_hand():
    # Orthogonal gradients of lengths 1 and 2: M = diag(1, 4), B = diag(1, 1/2), α = [1, 1/2], Ĝ = I.
    direction, weights = aggregators.aligned_mtl(np.array([[1.0, 0.0], [0.0, 2.0]]))
    np.testing.assert_allclose(weights.numpy(), [1.0, 0.5], rtol=1e-12)
    np.testing.assert_allclose(direction.numpy(), [1.0, 1.0], rtol=1e-12)
    # Task importances weigh the aligned gradients: w = [2, 1] gives [2, 1]·Ĝ.
    _, weights = aggregators.aligned_mtl(np.array([[1.0, 0.0], [0.0, 2.0]]), task_weights=[2.0, 1.0])
    np.testing.assert_allclose(weights.numpy(), [2.0, 0.5], rtol=1e-12)


CASES = [(tasks, rank, scale) for tasks in (2, 3, 5) for rank in (1, 2, 8) for scale in (1e-3, 1.0, 1e3)]


@pytest.mark.parametrize(("tasks", "rank", "scale", "seed"), [(*case, i) for i, case in enumerate(CASES)])
def test_the_weights_equal_libmtls_and_align_the_singular_values(tasks, rank, scale, seed):
    rng = np.random.default_rng(seed)
    g = scale * (rng.normal(size=(tasks, rank)) @ rng.normal(size=(rank, 10))) * np.exp(rng.normal(size=(tasks, 1)))
    for dtype, tolerance in ((tf.float64, 1e-9), (tf.float32, 1e-4)):
        data = g.astype(dtype.as_numpy_dtype).astype(np.float64)
        epsilon = float(np.finfo(dtype.as_numpy_dtype).eps)
        reference, balance = _libmtl(data, epsilon)
        alpha = _weights(data, dtype)
        np.testing.assert_allclose(alpha, reference, rtol=tolerance, atol=tolerance * np.abs(reference).max())
        # The aligned matrix Ĝ = B G has all its non-zero singular values equal (condition number 1).
        singular = np.linalg.svd(balance @ data, compute_uv=False)
        kept = singular[singular > 1e-6 * singular.max()]
        assert len(kept) == min(rank, tasks)
        np.testing.assert_allclose(kept, kept[0], rtol=1e-6)
        np.testing.assert_allclose(alpha @ data, reference @ data, rtol=tolerance, atol=tolerance * scale)


def test_scaling_the_gradients_leaves_the_weights_unchanged():
    g = np.random.default_rng(7).normal(size=(4, 6))
    expected = _weights(g)
    for scale in (1e-6, 1e-3, 1e3, 1e6):
        np.testing.assert_allclose(_weights(scale * g), expected, rtol=1e-9)


def test_absent_tasks_zero_importances_and_zero_gradients():
    rng = np.random.default_rng(2)
    g = rng.normal(size=(4, 5))
    alpha = _weights(g, present=[1, 1, 0, 1])
    assert alpha[2] == 0.0
    np.testing.assert_allclose(alpha[[0, 1, 3]], _weights(g[[0, 1, 3]]), rtol=1e-9)
    np.testing.assert_allclose(_weights(g, task_weights=[1.0, 1.0, 0.0, 1.0]), alpha, rtol=1e-12)
    assert not _weights(np.zeros((3, 2))).any()
    with pytest.raises(ValueError, match="task_weights"):
        aggregators.aligned_mtl(g, task_weights=[1.0, 2.0])


def test_the_eigendecomposition_is_exact_also_under_xla():
    rng = np.random.default_rng(5)
    for size in (3, 6):
        a = rng.normal(size=(size, 2 * size))
        matrix = tf.constant(a @ a.T)
        for function in (symmetric_eigen, tf.function(symmetric_eigen, jit_compile=True)):
            eigenvalues, vectors = (x.numpy() for x in function(matrix))
            np.testing.assert_allclose((vectors * eigenvalues) @ vectors.T, matrix.numpy(), atol=1e-12)
            np.testing.assert_allclose(vectors.T @ vectors, np.eye(size), atol=1e-12)
            np.testing.assert_allclose(np.sort(eigenvalues), np.linalg.eigvalsh(matrix.numpy()), rtol=1e-12)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_the_same_weights_inside_tf_function_and_xla(dtype):
    g = tf.constant(np.random.default_rng(3).normal(size=(5, 7)), dtype)
    present = tf.constant([1, 1, 1, 0, 1], dtype)
    eager = aggregators.aligned_mtl(g, present=present)[1].numpy()
    for compiled in (tf.function(aggregators.aligned_mtl), tf.function(aggregators.aligned_mtl, jit_compile=True)):
        np.testing.assert_allclose(compiled(g, present=present)[1].numpy(), eager, rtol=1e-6)
    wide = tf.cast(g, tf.float64)
    epsilon = float(np.finfo(dtype.as_numpy_dtype).eps)
    direct = aligned_weights(tf.matmul(wide, wide, transpose_b=True), tf.cast(present, tf.float64), None, epsilon)
    np.testing.assert_allclose(eager, direct.numpy(), rtol=1e-6)
