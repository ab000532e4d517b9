"""GradVac: hand-computed T = 2 cases, a NumPy re-implementation of Algorithm 1 on the vectors, scales, XLA."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.weighting import GradVac, aggregators
from keras_mtmm.weighting.gradvac import task_orders


def _reference(g: np.ndarray, targets: np.ndarray, beta: float, orders: np.ndarray):
    """Algorithm 1 of the paper on the gradient vectors themselves, float64: (direction, new targets)."""
    targets = targets.astype(float).copy()
    old = targets.copy()
    modified = []
    for i in range(len(g)):
        gi = g[i].copy()
        for j in orders[i]:
            norm_i, norm_j = np.linalg.norm(gi), np.linalg.norm(g[j])
            if j == i or norm_i == 0 or norm_j == 0:
                continue
            phi = np.clip(gi @ g[j] / (norm_i * norm_j), -1, 1)
            phi_hat = old[i, j]
            if phi < phi_hat and phi_hat**2 < 1:
                gi = gi + g[j] * norm_i * (phi_hat * np.sqrt(1 - phi**2) - phi * np.sqrt(1 - phi_hat**2)) / (
                    norm_j * np.sqrt(1 - phi_hat**2)
                )
            targets[i, j] = (1 - beta) * phi_hat + beta * phi
        modified.append(gi)
    return np.sum(modified, axis=0), targets


def _gradvac(g, targets, beta, orders, dtype=tf.float64, present=None):
    g, targets = tf.constant(g, dtype), tf.constant(targets, dtype)
    d, w, t = aggregators.gradvac(g, targets, beta, order=orders, present=present)
    return d.numpy().astype(float), w.numpy().astype(float), t.numpy().astype(float)


def test_by_hand_orthogonal_gradients_reach_their_target():
    # g1 ⊥ g2, targets 0.5: w = ‖g1‖ (0.5·1 − 0·√0.75) / (‖g2‖ √0.75) = 1/√3 for each, and then
    # cos(g1', g2) = (1/√3) / √(1 + 1/3) = 0.5 exactly; targets: 0.5·0.5 + 0.5·0 = 0.25.
    g = np.array([[1.0, 0.0], [0.0, 1.0]])
    d, w, t = _gradvac(g, np.full((2, 2), 0.5), 0.5, [0, 1])
    np.testing.assert_allclose(w, [1 + 1 / np.sqrt(3), 1 + 1 / np.sqrt(3)], atol=1e-12)
    np.testing.assert_allclose(d, w, atol=1e-12)
    np.testing.assert_allclose(t[0, 1], 0.25, atol=1e-12)
    np.testing.assert_allclose(t[1, 0], 0.25, atol=1e-12)
    g1 = np.array([1.0, 1 / np.sqrt(3)])  # g1' = g1 + (1/√3) g2
    assert g1 @ g[1] / np.linalg.norm(g1) == pytest.approx(0.5, abs=1e-12)


def test_by_hand_zero_targets_are_pcgrad():
    # g1 = [1, 0], g2 = [-1, 1], targets 0: w_12 = ‖g1‖ (0 + (1/√2)) / ‖g2‖ = 1/2, w_21 = ‖g2‖ (1/√2) / ‖g1‖ = 1;
    # g1' = [0.5, 0.5] ⊥ g2, g2' = [0, 1] ⊥ g1: PCGrad's [0.5, 1.5] = 2·g1 + 1.5·g2. Targets: β·cos = -0.5/√2.
    g = np.array([[1.0, 0.0], [-1.0, 1.0]])
    d, w, t = _gradvac(g, np.zeros((2, 2)), 0.5, [0, 1])
    np.testing.assert_allclose(d, [0.5, 1.5], atol=1e-12)
    np.testing.assert_allclose(w, [2.0, 1.5], atol=1e-12)
    np.testing.assert_allclose(t, [[0.0, -0.5 / np.sqrt(2)], [-0.5 / np.sqrt(2), 0.0]], atol=1e-12)
    # No conflict and targets below the cosines: nothing moves, but the targets still follow the EMA.
    d, w, t = _gradvac(np.array([[1.0, 0.0], [1.0, 1.0]]), np.zeros((2, 2)), 0.25, [1, 0])
    np.testing.assert_allclose(w, [1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(t[0, 1], 0.25 / np.sqrt(2), atol=1e-12)


@pytest.mark.parametrize("tasks", [2, 3, 5])
def test_zero_targets_equal_pcgrad_for_any_t(tasks):
    rng = np.random.default_rng(tasks)
    g = rng.normal(size=(tasks, 7))
    order = list(rng.permutation(tasks))
    np.testing.assert_allclose(
        aggregators.gradvac(g, order=order)[0].numpy(), aggregators.pcgrad(g, order=order)[0].numpy(), atol=1e-10
    )


CASES = [(tasks, scale) for tasks in (2, 3, 5) for scale in (1e-3, 1.0, 1e3)]


@pytest.mark.parametrize(("tasks", "scale", "seed"), [(*case, i) for i, case in enumerate(CASES)])
def test_equals_the_papers_algorithm_over_several_steps(tasks, scale, seed):
    rng = np.random.default_rng(seed)
    beta = 0.3
    targets = rng.uniform(-0.4, 0.8, size=(tasks, tasks))  # a state mid-training: many corrections
    reference_targets = targets.copy()
    corrections = 0
    for _ in range(4):
        g = scale * (rng.normal(size=(tasks, 9)) + 0.3 * rng.normal(size=9))
        orders = np.stack([rng.permutation(tasks) for _ in range(tasks)])
        expected, reference_targets = _reference(g, reference_targets, beta, orders)
        d, w, new_targets = _gradvac(g, targets, beta, orders)
        np.testing.assert_allclose(d, expected, rtol=1e-9, atol=1e-9 * scale)
        np.testing.assert_allclose(w @ g, d, rtol=1e-9, atol=1e-9 * scale)
        np.testing.assert_allclose(new_targets, reference_targets, atol=1e-12)
        d32, w32, t32 = _gradvac(g, targets, beta, orders, tf.float32)
        np.testing.assert_allclose(w32, w, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(t32, reference_targets, atol=1e-5)
        corrections += int(np.abs(w - 1).max() > 1e-9)
        targets = new_targets
    assert corrections >= 2  # the case exercises the surgery, not just the EMA


@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_weights_and_targets_do_not_depend_on_the_scale(scale):
    rng = np.random.default_rng(9)
    g = rng.normal(size=(3, 6))
    targets = rng.uniform(-0.3, 0.6, size=(3, 3))
    orders = np.stack([rng.permutation(3) for _ in range(3)])
    _, w, t = _gradvac(g, targets, 0.5, orders)
    d_scaled, w_scaled, t_scaled = _gradvac(scale * g, targets, 0.5, orders)
    np.testing.assert_allclose(w_scaled, w, rtol=1e-12)
    np.testing.assert_allclose(t_scaled, t, atol=1e-12)
    np.testing.assert_allclose(d_scaled, scale * (w @ g), rtol=1e-12)


def test_absent_tasks_and_zero_gradients_are_skipped():
    rng = np.random.default_rng(10)
    g = rng.normal(size=(3, 5))
    targets = rng.uniform(-0.3, 0.6, size=(3, 3))
    orders = np.stack([[2, 0, 1], [1, 2, 0], [0, 1, 2]])
    d, w, t = _gradvac(g, targets, 0.5, orders, present=[1, 0, 1])
    assert w[1] == 0.0
    np.testing.assert_array_equal(t[1], targets[1])  # the absent task's own targets and
    np.testing.assert_array_equal(t[:, 1], targets[:, 1])  # those against it stay
    sub = [0, 2]
    expected, expected_targets = _reference(g[sub], targets[np.ix_(sub, sub)], 0.5, np.array([[1, 0], [0, 1]]))
    np.testing.assert_allclose(d, expected, atol=1e-12)
    np.testing.assert_allclose(t[np.ix_(sub, sub)], expected_targets, atol=1e-12)
    g[1] = 0.0  # a zero gradient, present: the same
    d_zero, w_zero, t_zero = _gradvac(g, targets, 0.5, orders)
    np.testing.assert_allclose(d_zero, d, atol=1e-12)
    np.testing.assert_array_equal(t_zero[1], targets[1])


def test_orders_tf_function_and_xla():
    orders = task_orders(4, seed=3).numpy()
    assert all(sorted(row) == [0, 1, 2, 3] for row in orders)
    np.testing.assert_array_equal(task_orders(4, seed=3).numpy(), orders)  # stateless: the same every call
    assert len({tuple(row) for row in task_orders(6, seed=1).numpy()}) > 1  # a permutation per task
    np.testing.assert_array_equal(task_orders(3, order=[2, 0, 1]).numpy(), [[2, 0, 1]] * 3)
    rng = np.random.default_rng(11)
    g = tf.constant(rng.normal(size=(3, 8)), tf.float32)
    targets = tf.constant(rng.uniform(-0.3, 0.6, size=(3, 3)), tf.float32)
    eager = aggregators.gradvac(g, targets, 0.5, seed=4)
    for jit in (False, True):
        compiled = tf.function(lambda x, t: aggregators.gradvac(x, t, 0.5, seed=4), jit_compile=jit)
        for got, want in zip(compiled(g, targets), eager):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="beta must be in"):
        aggregators.gradvac(g, beta=2.0)


def test_the_strategy_keeps_its_targets():
    strategy = GradVac(["a", "b", "c"], beta=0.5, seed=2)
    strategy.build(None)
    g = tf.constant([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    strategy.shared_gradient(g, tf.ones(3), tf.ones(3))
    targets = strategy.targets.numpy()
    np.testing.assert_allclose(targets[0, 1], 0.5 * (-1 / np.sqrt(2)), rtol=1e-6)  # β·cos from zero targets
    np.testing.assert_allclose(targets[0, 2], 0.0, atol=1e-7)  # orthogonal: cos 0
    _, weights = strategy.shared_gradient(g, tf.ones(3), tf.ones(3))
    assert not np.allclose(strategy.targets.numpy(), targets)  # moved again
    assert GradVac.from_config(strategy.get_config()).get_config() == strategy.get_config()
    with pytest.raises(ValueError, match="beta must be in"):
        GradVac(["a", "b"], beta=-1)
