"""IMTL-G: the combination of task gradients with equal projections on every task's gradient direction.

Liu, Li, Kuang, Xue, Chen, Yang, Liao, Zhang, "Towards Impartial Multi-task
Learning", ICLR 2021 (the gradient balancing part, IMTL-G).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.weighting.gradient import GradientWeighting


def imtl_weights(gram: tf.Tensor, present: tf.Tensor) -> tf.Tensor:
    """IMTL-G's weights: Σ_i α_i = 1 and `d = Σ_i α_i g_i` has the same projection on every `u_i = g_i/‖g_i‖`.

    Liu et al., ICLR 2021, Section 3.2 (Eq. 6 and the closed form after it):
    `d·u_1 = d·u_t` for every t, `α_{2..T} = g_1 Uᵀ(DUᵀ)⁻¹` with `D = [g_1 − g_t]`,
    `U = [u_1 − u_t]` and `α_1 = 1 − Σ_{t≥2} α_t` (LibMTL's IMTL computes exactly
    this). The same linear conditions are solved here from the Gram matrix
    K = G Gᵀ, in float64, as one bordered system: `(Kα)_i / ‖g_i‖ = c` for every
    task (the common projection c = d·u_i), `Σ_i α_i = 1`. The weights may be
    negative, as in the paper. K is divided by its largest present diagonal
    entry first, so the weights do not depend on the gradients' scale.

    Degenerate cases, where the paper's inverse does not exist (the system is
    singular, or nearly: a pivot below 1e-10): the α with Σα = 1 whose
    projections `d·u_i` are closest to equal (least squares), the smallest ‖α‖
    among ties. Where the system is singular but solvable (identical or parallel
    gradients: every such α is impartial) that is the smallest α, e.g. the
    mean; where it has no solution (e.g. g_3 = (g_1 + g_2)/2 with g_1 ⊥ g_2: no
    point of the gradients' affine hull projects equally), the most impartial one.
    Absent tasks and zero gradients (shorter than 1e-12 of the longest: no
    direction u_i) get weight 0. The paper's loss-scale part (IMTL-L, learned
    loss scales e^{s_i}) is not included. T is static; eager, `tf.function` and XLA.

    Args:
        gram: `[T, T]` Gram matrix of the task gradients (float64 recommended).
        present: `[T]`, 1 for tasks in the batch, 0 for absent ones.

    Returns:
        `[T]` weights in the dtype of `gram`, summing to 1 over the tasks with a
        gradient (all 0 when none has one).
    """
    dtype = gram.dtype
    num_tasks = gram.shape[0]
    k = tf.cast(gram, tf.float64)
    mask = tf.cast(present, tf.float64)
    norms_sq = tf.linalg.diag_part(k) * mask
    largest = tf.reduce_max(norms_sq)
    active = tf.cast(norms_sq > 1e-24 * largest, tf.float64) * mask
    k = k / tf.where(largest > 0, largest, 1.0)
    norms = tf.sqrt(tf.where(active > 0, norms_sq / tf.where(largest > 0, largest, 1.0), 1.0))
    pair = active[:, None] * active[None, :]
    inactive = tf.linalg.diag(1.0 - active)  # rows α_i = 0 for the tasks left out
    projections = k / norms[:, None] * pair  # (projections α)_i = d·u_i
    # With no task to weigh, the last row and column reduce to c = 0 so that the system stays regular.
    nobody = 1.0 - tf.reduce_max(active)
    top = tf.concat([projections + inactive, -active[:, None]], axis=1)
    bottom = tf.concat([active, nobody[None]], axis=0)[None, :]
    system = tf.concat([top, bottom], axis=0)
    rhs = tf.one_hot(num_tasks, num_tasks + 1, dtype=tf.float64)
    # By QR (which does not fail on a singular system, and compiles with XLA): a diagonal entry of R below
    # 1e-10 of the largest marks the system singular (its entries are at most 1 in size). One step of
    # iterative refinement takes the solution to float64 rounding.
    q, r = tf.linalg.qr(system)
    pivots = tf.abs(tf.linalg.diag_part(r))
    regular = tf.reduce_min(pivots) > 1e-10 * tf.reduce_max(pivots)
    r += tf.cast(~regular, tf.float64) * tf.eye(num_tasks + 1, dtype=tf.float64)  # no 1/0 where singular

    def solve(right):
        return tf.linalg.triangular_solve(r, tf.matmul(q, right, transpose_a=True), lower=False)

    solution = solve(rhs[:, None])
    solution = (solution + solve(rhs[:, None] - tf.matmul(system, solution)))[:, 0]
    residual = tf.reduce_max(tf.abs(tf.linalg.matvec(system, solution) - rhs))
    exact = regular & tf.reduce_all(tf.math.is_finite(solution)) & (residual <= 1e-9)
    alpha = tf.where(exact, solution[:num_tasks], closest_to_impartial(projections, active, inactive))
    alpha = tf.where(nobody > 0, tf.zeros_like(alpha), alpha * active)
    return tf.cast(alpha, dtype)


def closest_to_impartial(projections: tf.Tensor, active: tf.Tensor, inactive: tf.Tensor) -> tf.Tensor:
    """The α with Σα = 1 (over `active`) minimising the spread Σ_i (d·u_i − mean_j d·u_j)² + 1e-9·s‖α‖².

    The fallback of `imtl_weights` where the equal-projection system is
    singular. The small ridge (s: the spread matrix's trace) picks the smallest
    α among equally impartial ones; it limits the accuracy to about 1e-7.
    """
    num_tasks = projections.shape[0]
    count = tf.maximum(tf.reduce_sum(active), 1.0)
    centred = projections - active[:, None] * tf.reduce_sum(projections, axis=0, keepdims=True) / count
    spread = tf.matmul(centred, centred, transpose_a=True)
    ridge = 1e-9 * tf.maximum(tf.linalg.trace(spread), 1e-3)
    top = tf.concat([spread + ridge * tf.eye(num_tasks, dtype=tf.float64) + inactive, active[:, None]], axis=1)
    bottom = tf.concat([active, 1.0 - tf.reduce_max(active, keepdims=True)], axis=0)[None, :]
    rhs = tf.one_hot(num_tasks, num_tasks + 1, dtype=tf.float64)
    return tf.linalg.solve(tf.concat([top, bottom], axis=0), rhs[:, None])[:num_tasks, 0]


@WEIGHTINGS.register("imtl")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class IMTL(GradientWeighting):
    """Moves along the combination of task gradients that projects equally on each (IMTL-G, ICLR 2021).

    Every step solves for α exactly (`imtl_weights`); the shared parameters
    move along `Σ_i α_i g_i`, task-specific ones along the plain gradient of
    `Σ_i w_i L_i`.

    Args:
        task_names: the tasks, in order.
        task_weights: base weights w_i (gradients are of w_i·L_i).
    """

    def shared_gradient(self, task_gradients, task_losses, present):
        wide = tf.cast(task_gradients, tf.float64)
        alpha = imtl_weights(tf.matmul(wide, wide, transpose_b=True), present)
        alpha = tf.stop_gradient(tf.cast(alpha, task_gradients.dtype))
        return tf.linalg.matvec(task_gradients, alpha, transpose_a=True), alpha
