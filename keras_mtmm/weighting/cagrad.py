"""CAGrad: conflict-averse gradient descent.

Liu, Liu, Jin, Stone, Liu, "Conflict-Averse Gradient Descent for Multi-task
Learning", NeurIPS 2021.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from keras_mtmm.config.bounds import Bound
from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.weighting.gradient import GradientWeighting
from keras_mtmm.weighting.mgda import MAX_ENUMERATED_TASKS, SUBSETS, bordered_systems


def cagrad_weights(gram: tf.Tensor, present: tf.Tensor, c: float) -> tf.Tensor:
    """CAGrad's coefficients on the task gradients: `d = Σ_i coefficients_i g_i`, exactly.

    Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning",
    NeurIPS 2021, Eq. (2) and Algorithm 1: g0 = Σ_i m_i g_i (the mean over the
    present tasks), `w = argmin_{w ∈ simplex} g_w·g0 + c‖g0‖‖g_w‖` with
    `g_w = Σ_i w_i g_i`, and `d = g0 + (c‖g0‖/‖g_w‖) g_w`. keras_mtmm returns this
    d as the paper defines it (no division by 1 + c², LibMTL's `rescale=1`).

    The inner problem is solved exactly from the Gram matrix K = G Gᵀ, not by
    gradient steps (whose result depended on the gradients' scale). On a face S
    of the simplex whose gradients are affinely independent, the stationarity
    conditions `b_S + t K_S w_S = λ1, 1ᵀw_S = 1` (b = K m, t = c‖g0‖/‖g_w‖) are
    linear for a fixed t, with solution `w = u + v/t`: u is the face's affine
    min-norm point (`K_S u = β1, 1ᵀu = 1`) and v solves `K_S v = α1 − b_S,
    1ᵀv = 0`. Since uᵀKv = 0, ‖g_w‖² = uᵀKu + vᵀKv/t², and ‖g_w‖ = c‖g0‖/t gives
    `t² = (c²‖g0‖² − vᵀKv) / uᵀKu` in closed form. Every subset of the present
    tasks is solved at once (two batched LU solves in float64); the candidates
    with w ≥ 0 are feasible points, the optimum is among them (its support can
    be taken affinely independent, Carathéodory), and the smallest objective
    wins. K is divided by its largest present diagonal entry first: the result
    scales with the gradients exactly. T is static; eager, `tf.function` and XLA.

    Args:
        gram: `[T, T]` Gram matrix of the task gradients.
        present: `[T]`, 1 for tasks in the batch, 0 for absent ones (coefficient 0).
        c: the radius factor, >= 0 (0: plain averaging).

    Returns:
        `[T]` coefficients: `m + (c‖g0‖/‖g_w‖) w`, or `m` where c = 0, g0 = 0, or
        the optimal g_w is 0 (0 in the hull: every d of the ball is then optimal,
        and g0 is the one nearest g0).
    """
    dtype = gram.dtype
    num_tasks = gram.shape[0]
    mask = tf.cast(present, tf.float64)
    k = tf.cast(gram, tf.float64) * mask[:, None] * mask[None, :]
    scale = tf.reduce_max(tf.linalg.diag_part(k))
    k = k / tf.where(scale > 0, scale, 1.0)
    mean = mask / tf.maximum(tf.reduce_sum(mask), 1.0)
    b = tf.linalg.matvec(k, mean)
    radius = c * tf.sqrt(tf.maximum(tf.tensordot(mean, b, 1), 0.0))
    subsets = tf.constant(SUBSETS[num_tasks], tf.float64)
    allowed = tf.reduce_all(subsets <= mask[None, :], axis=1)
    matrices = bordered_systems(k, subsets)
    size = num_tasks + 1
    right = tf.stack(
        [
            tf.broadcast_to(tf.one_hot(num_tasks, size, dtype=tf.float64), tf.shape(matrices)[:2]),
            tf.concat([-b[None, :] * subsets, tf.zeros_like(subsets[:, :1])], axis=1),
        ],
        axis=2,
    )  # [N, T + 1, 2]: the right sides of u's and v's systems
    solutions = tf.linalg.solve(matrices + 1e-13 * tf.eye(size, dtype=tf.float64), right)
    residual = tf.reduce_max(tf.abs(tf.matmul(matrices, solutions) - right), axis=[1, 2])
    u, v = solutions[:, :num_tasks, 0], solutions[:, :num_tasks, 1]
    u_norm = tf.einsum("ni,ij,nj->n", u, k, u)
    v_norm = tf.einsum("ni,ij,nj->n", v, k, v)
    t_squared = (radius**2 - v_norm) / tf.where(u_norm > 1e-12, u_norm, 1.0)
    ok = allowed & (residual <= 1e-9) & (u_norm > 1e-12) & (t_squared > 0)
    t = tf.sqrt(tf.where(ok, t_squared, 1.0))
    w = u + v / t[:, None]
    ok &= tf.reduce_all(w >= -1e-9, axis=1) & tf.reduce_all(tf.math.is_finite(w), axis=1)
    objective = tf.linalg.matvec(w, b) + radius * tf.sqrt(tf.maximum(tf.einsum("ni,ij,nj->n", w, k, w), 0.0))
    best = tf.argmin(tf.where(ok, objective, tf.constant(float("inf"), tf.float64)))
    w = tf.maximum(tf.gather(w, best), 0.0) * mask
    w = w / tf.maximum(tf.reduce_sum(w), 1e-300)
    gw_norm = tf.sqrt(tf.maximum(tf.tensordot(w, tf.linalg.matvec(k, w), 1), 0.0))
    step = radius / tf.where(gw_norm > 0, gw_norm, 1.0)
    # With 0 in the hull of the gradients and no candidate below F = 0, the optimum is g_w = 0, where every
    # d of the ball is a maximiser of the paper's max-min problem: take the one nearest g0, g0 itself.
    # 0 is in the hull exactly when some face's affine min-norm point u (solved above) is feasible and 0.
    zero_in_hull = tf.reduce_any(
        allowed & (residual <= 1e-9) & tf.reduce_all(u >= -1e-9, axis=1) & (tf.abs(u_norm) <= 1e-12)
    )
    zero_optimal = zero_in_hull & (
        tf.reduce_min(tf.where(ok, objective, tf.constant(float("inf"), tf.float64))) >= -1e-12
    )
    usable = tf.reduce_any(ok) & (radius > 0) & (gw_norm > 0) & ~zero_optimal
    return tf.cast(tf.where(usable, mean + step * w, mean), dtype)


def cagrad_direction(task_gradients: tf.Tensor, present: tf.Tensor, c: float):
    """CAGrad's update `d = g0 + (c‖g0‖/‖g_w‖) g_w` and its coefficients (`cagrad_weights`).

    Returns:
        `(d [P], coefficients [T])` with `d = Σ_i coefficients_i g_i`.
    """
    gram = tf.matmul(task_gradients, task_gradients, transpose_b=True)
    coefficients = cagrad_weights(gram, present, c)
    return tf.linalg.matvec(task_gradients, coefficients, transpose_a=True), coefficients


@dataclass
class CAGradConfig:
    """`weighting.cagrad`: the strategy's hyperparameters."""

    cagrad_c: float = 0.4


@WEIGHTINGS.register("cagrad")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class CAGrad(GradientWeighting):
    """Moves along the average gradient, bent toward the worst-off task within radius c‖g0‖.

    Args:
        task_names: the tasks, in order.
        task_weights: base weights w_i (gradients are of w_i·L_i).
        c: the radius factor (the paper uses 0.4–0.5); 0 gives plain averaging.
    """

    config_class = CAGradConfig
    checks = (Bound("cagrad_c", ">= 0", lambda c: c >= 0, "0.4"),)

    max_tasks = MAX_ENUMERATED_TASKS  # the exact solver's 2^T supports

    @classmethod
    def from_settings(cls, weighting, context):
        options = weighting.get()
        return cls(context.task_names, context.weights, c=options.cagrad_c, name="weighting")

    def __init__(self, task_names: list[str], task_weights: list[float] | None = None, c: float = 0.4, **kwargs):
        super().__init__(task_names, task_weights, **kwargs)
        if c < 0:
            raise ValueError(f"CAGrad: c must be >= 0, got {c}")
        self.c = float(c)

    def shared_gradient(self, task_gradients, task_losses, present):
        return cagrad_direction(task_gradients, present, self.c)

    def get_config(self):
        return {**super().get_config(), "c": self.c}
