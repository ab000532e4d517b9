"""The public aggregators: hand-computed PCGrad, a NumPy reference, the exact solvers' wrappers, XLA."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.weighting import aggregators
from keras_mtmm.weighting.cagrad import cagrad_direction
from keras_mtmm.weighting.mgda import min_norm_weights


def _pcgrad_reference(g: np.ndarray, order: list[int]) -> np.ndarray:
    """Algorithm 1 of the paper on the vectors themselves, float64."""
    projected = []
    for i in range(len(g)):
        gi = g[i].copy()
        for j in order:
            dot = gi @ g[j]
            if j != i and dot < 0 and g[j] @ g[j] > 0:
                gi = gi - dot / (g[j] @ g[j]) * g[j]
        projected.append(gi)
    return np.sum(projected, axis=0)


def test_pcgrad_by_hand():
    # g1 = [1, 0], g2 = [-1, 1]: g1' = g1 + g2/2 = [0.5, 0.5], g2' = g2 + g1 = [0, 1]; sum [0.5, 1.5] = 2·g1 + 1.5·g2.
    g = np.array([[1.0, 0.0], [-1.0, 1.0]])
    direction, weights = aggregators.pcgrad(g, order=[0, 1])
    np.testing.assert_allclose(direction.numpy(), [0.5, 1.5], atol=1e-6)
    np.testing.assert_allclose(weights.numpy(), [2.0, 1.5], atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_pcgrad_equals_the_papers_algorithm(seed):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(4, 6))
    order = list(rng.permutation(4))
    direction, weights = aggregators.pcgrad(tf.constant(g), order=order)
    np.testing.assert_allclose(direction.numpy(), _pcgrad_reference(g, order), atol=1e-10)
    np.testing.assert_allclose(weights.numpy() @ g, direction.numpy(), atol=1e-10)
    # A seeded order is one permutation, the same every call.
    first = aggregators.pcgrad(g, seed=seed)[0].numpy()
    np.testing.assert_allclose(aggregators.pcgrad(g, seed=seed)[0].numpy(), first)


def test_mean_sum_and_absent_tasks():
    g = np.array([[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]])
    present = [1, 1, 0]
    np.testing.assert_allclose(aggregators.mean(g, present=present)[0].numpy(), [2.0, 3.0])
    np.testing.assert_allclose(aggregators.sum(g, present=present)[0].numpy(), [4.0, 6.0])
    for name in ("pcgrad", "cagrad", "mgda"):
        direction, weights = getattr(aggregators, name)(g, present=present)
        assert weights.numpy()[2] == 0.0, name
        expected = getattr(aggregators, name)(g[:2])[0].numpy() if name != "pcgrad" else None
        if expected is not None:
            np.testing.assert_allclose(direction.numpy(), expected, atol=1e-9)


def test_the_exact_solvers_are_what_the_aggregators_return():
    g = tf.constant(np.random.default_rng(1).normal(size=(3, 5)))
    present = tf.ones([3], tf.float64)
    d, w = aggregators.cagrad(g, c=0.5)
    np.testing.assert_allclose(d.numpy(), cagrad_direction(g, present, 0.5)[0].numpy())
    d, w = aggregators.mgda(g)
    np.testing.assert_allclose(w.numpy(), min_norm_weights(tf.matmul(g, g, transpose_b=True), present).numpy())
    np.testing.assert_allclose(d.numpy(), w.numpy() @ g.numpy())
    # The example, through the public API.
    d, _ = aggregators.cagrad(0.1 * np.array([[-3.0, -2.0], [3.0, 1.0]]), c=0.5)
    np.testing.assert_allclose(d.numpy() / 0.1, [0.25, -0.5], atol=1e-6)
    with pytest.raises(ValueError, match="c must be >= 0"):
        aggregators.cagrad(g, c=-1)


@pytest.mark.parametrize("name", ["mean", "sum", "pcgrad", "cagrad", "mgda"])
def test_each_aggregator_scales_with_g_and_compiles_with_xla(name):
    g = tf.constant(np.random.default_rng(2).normal(size=(3, 4)), tf.float32)
    kwargs = {"order": [2, 0, 1]} if name == "pcgrad" else {}
    function = getattr(aggregators, name)
    eager, weights = function(g, **kwargs)
    np.testing.assert_allclose(function(1e3 * g, **kwargs)[0].numpy(), 1e3 * eager.numpy(), rtol=1e-4, atol=1e-3)
    compiled = tf.function(lambda x: function(x, **kwargs), jit_compile=True)
    np.testing.assert_allclose(compiled(g)[0].numpy(), eager.numpy(), atol=1e-5)
    np.testing.assert_allclose(weights.numpy() @ g.numpy(), eager.numpy(), atol=1e-5)
