"""DB-MTL: hand-computed steps, a NumPy re-implementation of LibMTL's DB_MTL over several steps, scales, XLA."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.weighting import DBMTL, aggregators


def _reference(gradients: list[np.ndarray], beta: float, beta_sigma: float) -> list[np.ndarray]:
    """The authors' update (LibMTL DB_MTL.backward) re-written in NumPy: one direction per step."""
    buffer = np.zeros_like(gradients[0])
    directions = []
    for step, g in enumerate(gradients, start=1):
        buffer = g + (beta / step**beta_sigma) * (buffer - g)
        norms = np.linalg.norm(buffer, axis=1)
        alpha = norms.max() / norms
        directions.append(sum(alpha[i] * buffer[i] for i in range(len(g))))
    return directions


def test_by_hand():
    # β = 0: α = [3/3, 3/1], d = g1 + 3·g2 = [3, 3].
    g = np.array([[3.0, 0.0], [0.0, 1.0]])
    d, alpha, ema = aggregators.db_mtl(g, beta=0.0)
    np.testing.assert_allclose(d.numpy(), [3.0, 3.0])
    np.testing.assert_allclose(alpha.numpy(), [1.0, 3.0])
    # β = 0.9 from zeros: ĝ = 0.1·g, d = [0.3, 0.3]; again: ĝ = 0.9·0.1·g + 0.1·g = 0.19·g.
    d, _, ema = aggregators.db_mtl(g, beta=0.9)
    np.testing.assert_allclose(d.numpy(), [0.3, 0.3])
    d, _, ema = aggregators.db_mtl(g, ema, step=2, beta=0.9)
    np.testing.assert_allclose(d.numpy(), [0.57, 0.57])
    # σ = 1: β_2 = 0.9 / 2, ĝ = 0.45·0.1·g + 0.55·g = 0.595·g.
    _, _, first = aggregators.db_mtl(g, beta=0.9, beta_sigma=1.0)
    d, _, _ = aggregators.db_mtl(g, first, step=2, beta=0.9, beta_sigma=1.0)
    np.testing.assert_allclose(d.numpy(), [3 * 0.595, 3 * 0.595])
    # The log transform: gradients of L with L = [2, 0.5] are those of log L times L.
    losses = np.array([2.0, 0.5])
    d_log, _, _ = aggregators.db_mtl(g, beta=0.0)
    d_loss, _, _ = aggregators.db_mtl(g * (losses + 1e-8)[:, None], beta=0.0, losses=losses)
    np.testing.assert_allclose(d_loss.numpy(), d_log.numpy(), rtol=1e-12)


CASES = [(tasks, scale) for tasks in (2, 3, 5) for scale in (1e-3, 1.0, 1e3)]


@pytest.mark.parametrize(("tasks", "scale", "seed"), [(*case, i) for i, case in enumerate(CASES)])
@pytest.mark.parametrize(("beta", "beta_sigma"), [(0.9, 0.0), (0.5, 0.5)])
def test_equals_the_reference_over_several_steps(tasks, scale, seed, beta, beta_sigma):
    rng = np.random.default_rng(seed)
    magnitudes = 10.0 ** rng.uniform(-2, 2, size=(tasks, 1))  # gradients of very different sizes
    gradients = [scale * magnitudes * rng.normal(size=(tasks, 11)) for _ in range(4)]
    expected = _reference(gradients, beta, beta_sigma)
    for dtype, tolerance in ((tf.float64, 1e-12), (tf.float32, 1e-5)):
        ema = None
        for step, (g, want) in enumerate(zip(gradients, expected), start=1):
            d, alpha, ema = aggregators.db_mtl(tf.constant(g, dtype), ema, step, beta, beta_sigma)
            np.testing.assert_allclose(d.numpy(), want, rtol=tolerance, atol=tolerance * np.abs(want).max())
            norms = np.linalg.norm((alpha.numpy()[:, None] * ema.numpy()).astype(float), axis=1)
            np.testing.assert_allclose(norms, norms.max(), rtol=10 * tolerance)  # every term at the largest norm


def test_absent_and_zero_tasks():
    rng = np.random.default_rng(3)
    g = rng.normal(size=(3, 6))
    ema = rng.normal(size=(3, 6))
    d, alpha, new_ema = aggregators.db_mtl(g, ema, step=3, beta=0.5, present=[1, 0, 1])
    assert alpha.numpy()[1] == 0.0
    np.testing.assert_array_equal(new_ema.numpy()[1], ema[1])  # kept for when the task comes back
    sub_d, _, sub_ema = aggregators.db_mtl(g[[0, 2]], ema[[0, 2]], step=3, beta=0.5)
    np.testing.assert_allclose(d.numpy(), sub_d.numpy(), atol=1e-12)
    np.testing.assert_allclose(new_ema.numpy()[[0, 2]], sub_ema.numpy(), atol=1e-12)
    d, alpha, _ = aggregators.db_mtl(np.array([[0.0, 0.0], [1.0, 2.0]]), beta=0.0)
    np.testing.assert_allclose(alpha.numpy(), [0.0, 1.0])
    np.testing.assert_allclose(d.numpy(), [1.0, 2.0])


def test_tf_function_and_xla():
    rng = np.random.default_rng(4)
    g = tf.constant(rng.normal(size=(3, 8)), tf.float32)
    ema = tf.constant(rng.normal(size=(3, 8)), tf.float32)
    eager = aggregators.db_mtl(g, ema, 2, 0.9, 0.5)
    for jit in (False, True):
        compiled = tf.function(lambda x, e, t: aggregators.db_mtl(x, e, t, 0.9, 0.5), jit_compile=jit)
        for got, want in zip(compiled(g, ema, tf.constant(2.0)), eager):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="beta in"):
        aggregators.db_mtl(g, beta=1.0)


def test_the_strategy_balances_log_loss_gradients_and_keeps_its_state():
    # Shared w, heads h1 and h2: L1 = (a1·w + h1)², L2 = 100·(a2·w + h2)² (a loss 100× larger).
    a = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    w = keras.Variable([0.5, -0.3, 0.2])
    heads = [keras.Variable(0.1), keras.Variable(-0.2)]
    strategy = DBMTL(["a", "b"], num_parameters=5, beta=0.5)
    strategy.build(None)
    expected_ema = np.zeros((2, 3))
    for step in (1, 2):
        with tf.GradientTape(persistent=True) as tape:
            r = tf.linalg.matvec(tf.constant(a, tf.float32), w.value) + tf.stack([h.value for h in heads])
            losses = tf.stack([r[0] ** 2, 100.0 * r[1] ** 2])
        shared, specific, effective = strategy.gradients(tape, losses, tf.ones(2), [w], heads)
        rv, lv = r.numpy().astype(float), losses.numpy().astype(float)
        log_grads = np.stack([2 * rv[0] * a[0] / lv[0], 200 * rv[1] * a[1] / lv[1]])  # ∇_w log L_i
        expected_ema = 0.5 * expected_ema + 0.5 * log_grads
        norms = np.linalg.norm(expected_ema, axis=1)
        alpha = norms.max() / norms
        np.testing.assert_allclose(shared[0].numpy(), alpha @ expected_ema, rtol=1e-5)
        # Heads: the plain gradient of Σ log L_i: d/dh_i log L_i = 2 / r_i.
        np.testing.assert_allclose([s.numpy() for s in specific], 2 / rv, rtol=1e-5)
        np.testing.assert_allclose(effective.numpy(), alpha / lv, rtol=1e-5)
        np.testing.assert_allclose(strategy.ema.numpy()[:, :3], expected_ema, rtol=1e-5)
        np.testing.assert_array_equal(strategy.ema.numpy()[:, 3:], 0.0)  # the columns past the shared ones
        assert float(strategy.steps.numpy()) == step
        del tape
    assert DBMTL.from_config(strategy.get_config()).get_config() == strategy.get_config()
    with pytest.raises(ValueError, match="num_parameters"):
        DBMTL(["a", "b"], num_parameters=0)
