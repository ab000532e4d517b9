"""FAMO: hand-computed weights and logit steps, a NumPy re-implementation of the algorithm on a toy problem, XLA."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.weighting import FAMO
from keras_mtmm.weighting.famo import adam_step, famo_logit_gradient, famo_weights


def test_by_hand():
    # z = [½, ½], L = [1, 3]: w ∝ [½, 1/6], w = [0.75, 0.25].
    weights = famo_weights(tf.zeros(2, tf.float64), tf.constant([1.0, 3.0], tf.float64), tf.ones(2, tf.float64))
    np.testing.assert_allclose(weights.numpy(), [0.75, 0.25], rtol=1e-7)
    # L: [1, 3] -> [0.5, 3]: δ = [log 2, 0], (∂z/∂ξ)ᵀδ = z ⊙ (δ − zᵀδ) = [¼ log 2, −¼ log 2].
    before, after = tf.constant([1.0, 3.0], tf.float64), tf.constant([0.5, 3.0], tf.float64)
    gradient = famo_logit_gradient(tf.zeros(2, tf.float64), before, after, tf.ones(2, tf.float64))
    np.testing.assert_allclose(gradient.numpy(), [0.25 * np.log(2), -0.25 * np.log(2)], rtol=1e-7)
    # Adam's first step from ξ = 0 is −α·sign(g) (to 1e-8): the task that improved more loses weight.
    zeros = tf.zeros(2, tf.float64)
    logits, first, second = adam_step(zeros, gradient, zeros, zeros, 1, 0.025, 1e-3)
    np.testing.assert_allclose(logits.numpy(), [-0.025, 0.025], rtol=1e-6)
    np.testing.assert_allclose(first.numpy(), 0.1 * gradient.numpy())
    np.testing.assert_allclose(second.numpy(), 0.001 * gradient.numpy() ** 2)


def test_the_weights_give_the_gradient_of_the_papers_loss():
    # d/dθ of c·Σ_i z_i log L_i(θ), c held constant, equals Σ_i w_i ∇L_i with w = famo_weights.
    theta = tf.Variable([0.3, -1.2, 0.7], dtype=tf.float64)
    logits = tf.constant([0.2, -0.5, 0.1], tf.float64)
    a = tf.constant(np.random.default_rng(0).normal(size=(3, 3)), tf.float64)
    with tf.GradientTape(persistent=True) as tape:
        losses = tf.reduce_sum((a * theta) ** 2, axis=1) + 0.1
        z = tf.nn.softmax(logits)
        c = tf.stop_gradient(1.0 / tf.reduce_sum(z / (losses + 1e-8)))
        papers = c * tf.reduce_sum(z * tf.math.log(losses + 1e-8))
        ours = tf.reduce_sum(famo_weights(logits, losses, tf.ones(3, tf.float64)) * losses)
    np.testing.assert_allclose(tape.gradient(ours, theta).numpy(), tape.gradient(papers, theta).numpy(), rtol=1e-10)


def _numpy_famo(x, y, steps, learning_rate=0.1, logit_rate=0.025, gamma=1e-3):
    """The official code's loop (famo.py's example, SGD instead of Adam for the model) in NumPy, float64."""
    weights = np.zeros((x.shape[1], y.shape[1]))
    xi, m, v = np.zeros(y.shape[1]), np.zeros(y.shape[1]), np.zeros(y.shape[1])
    history = []
    for t in range(1, steps + 1):
        residual = x @ weights - y
        losses = (residual**2).mean(axis=0)
        z = np.exp(xi) / np.exp(xi).sum()
        d = losses + 1e-8
        c = 1.0 / (z / d).sum()
        # ∇ of c·Σ z_i log d_i with c constant: Σ_i (c z_i / d_i) ∇L_i.
        grad = 2 * x.T @ residual / len(x) * (c * z / d)[None, :]
        weights = weights - learning_rate * grad
        new_losses = ((x @ weights - y) ** 2).mean(axis=0)
        delta = np.log(losses + 1e-8) - np.log(new_losses + 1e-8)
        jacobian = np.diag(z) - np.outer(z, z)  # ∂softmax/∂ξ
        g = jacobian.T @ delta + gamma * xi
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g**2
        xi = xi - logit_rate * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        history.append((c * z / d, xi.copy()))
    return history


@pytest.mark.parametrize(("tasks", "scale"), [(2, 1e-3), (3, 1.0), (5, 1e3)])
def test_equals_a_numpy_reimplementation_of_the_algorithm(tasks, scale):
    rng = np.random.default_rng(tasks)
    x = rng.normal(size=(64, 4))
    y = scale * rng.normal(size=(64, tasks)) * np.arange(1, tasks + 1)  # losses of different sizes
    expected = _numpy_famo(x, y, steps=25)
    weights = np.zeros((4, tasks))
    xi = m = v = tf.zeros(tasks, tf.float64)
    present = tf.ones(tasks, tf.float64)
    for t, (expected_weights, expected_xi) in enumerate(expected, start=1):
        losses = tf.constant(((x @ weights - y) ** 2).mean(axis=0))
        w = famo_weights(xi, losses, present)
        np.testing.assert_allclose(w.numpy(), expected_weights, rtol=1e-9)
        weights = weights - 0.1 * 2 * x.T @ (x @ weights - y) / len(x) * w.numpy()[None, :]
        after = tf.constant(((x @ weights - y) ** 2).mean(axis=0))
        gradient = famo_logit_gradient(xi, losses, after, present)
        xi, m, v = adam_step(xi, gradient, m, v, t, 0.025, 1e-3)
        np.testing.assert_allclose(xi.numpy(), expected_xi, rtol=1e-7, atol=1e-12)
    assert np.abs(xi.numpy()).max() > 0.01  # the logits learned something


def test_scale_absent_tasks_and_xla():
    rng = np.random.default_rng(5)
    logits = tf.constant(rng.normal(size=3), tf.float32)
    losses = tf.constant(rng.uniform(0.5, 2.0, size=3), tf.float32)
    after = losses * tf.constant([0.9, 0.99, 0.8])
    weights = famo_weights(logits, losses, tf.ones(3)).numpy()
    gradient = famo_logit_gradient(logits, losses, after, tf.ones(3)).numpy()
    for scale in (1e-3, 1e3):  # dividing by L makes both scale-free (up to ε)
        np.testing.assert_allclose(famo_weights(logits, scale * losses, tf.ones(3)).numpy(), weights, rtol=1e-4)
        scaled = famo_logit_gradient(logits, scale * losses, scale * after, tf.ones(3)).numpy()
        np.testing.assert_allclose(scaled, gradient, rtol=1e-3, atol=1e-6)
    masked = famo_weights(logits, losses, tf.constant([1.0, 0.0, 1.0])).numpy()
    assert masked[1] == 0.0 and masked.sum() == pytest.approx(1.0)
    kept = famo_weights(tf.gather(logits, [0, 2]), tf.gather(losses, [0, 2]), tf.ones(2))
    np.testing.assert_allclose(masked[[0, 2]], kept.numpy(), rtol=1e-6)
    for jit in (False, True):
        compiled = tf.function(lambda a, b, c: famo_logit_gradient(a, b, c, tf.ones(3)), jit_compile=jit)
        np.testing.assert_allclose(compiled(logits, losses, after).numpy(), gradient, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("update", ["same_batch", "next_batch"])
def test_the_strategy_learns_its_logits(update):
    strategy = FAMO(["a", "b"], [1.0, 2.0], learning_rate=0.025, gamma=1e-3, update=update)
    strategy.build(None)
    present = tf.ones(2)
    first, second = tf.constant([1.0, 3.0]), tf.constant([0.5, 3.0])
    total = strategy(first, present, training=True)
    np.testing.assert_allclose(total.numpy(), 0.75 * 1 + 0.25 * 3, rtol=1e-6)
    np.testing.assert_allclose(strategy.previous_losses.numpy(), [1.0, 3.0])
    if update == "same_batch":
        assert strategy.updates_after_step
        strategy.after_step(second, present)  # the same batch's losses after the optimizer step
    else:
        assert not strategy.updates_after_step
        np.testing.assert_array_equal(strategy.logits.numpy(), [0.0, 0.0])  # nothing to compare with yet
        strategy(second, present, training=True)  # the next batch's losses
    np.testing.assert_allclose(strategy.logits.numpy(), [-0.025, 0.025], rtol=1e-5)
    assert float(strategy.logit_steps.numpy()) == 1
    # Evaluation: the base weights, no state change.
    np.testing.assert_allclose(strategy(first, present, training=False).numpy(), 1.0 + 2.0 * 3.0)
    assert float(strategy.logit_steps.numpy()) == 1
    # A step where no task was in both batches leaves ξ alone.
    logits = strategy.logits.numpy()
    strategy.previous_present.assign([1.0, 0.0])
    strategy.learn(second, tf.constant([0.0, 1.0]))
    assert float(strategy.logit_steps.numpy()) == 1
    np.testing.assert_array_equal(strategy.logits.numpy(), logits)
    assert FAMO.from_config(strategy.get_config()).get_config() == strategy.get_config()
    with pytest.raises(ValueError, match="update must be one of"):
        FAMO(["a", "b"], update="later")
