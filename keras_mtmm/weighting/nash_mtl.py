"""Nash-MTL: the task gradients combined as the Nash bargaining solution.

Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik, Fetaya, "Multi-Task
Learning as a Bargaining Game", ICML 2022.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.weighting.gradient import GradientWeighting

# The solve stops when every equation α_i (Mα)_i = 1 holds to this relative error (it also bounds α's).
TOLERANCE = 1e-10
# Rounding can stop it earlier on nearly degenerate problems: a result within this is still accepted.
ACCEPTED = 1e-6
MAX_ITERATIONS = 100
# α_i‖g_i‖ grows past this only where 0 is (within about 1e-6) in the hull of the unit gradients.
DIVERGED = 1e6


def nash_weights(gram: tf.Tensor, present: tf.Tensor) -> tf.Tensor:
    """Nash-MTL's weights: α > 0 with `(Mα)_i = 1/α_i` for every present task, M = G Gᵀ, exactly.

    Navon et al., ICML 2022, Eq. (3) with Theorem 5.1: the bargaining solution
    `d = argmax_{‖d‖ ≤ ε} Σ_i log(g_iᵀd)` is `d ∝ Σ_i α_i g_i` with `GGᵀα = 1/α`
    elementwise. keras_mtmm returns `d = Σ_i α_i g_i` for that α (so ‖d‖² = αᵀMα =
    #tasks at every scale: G → sG gives α → α/s and the same d). The authors'
    code (and LibMTL's) approximates α by up to 20 convex problems (cvxpy/ECOS,
    stopping at a residual of 1e-3, warm-started from the previous step's α) and
    clips the shared gradient to norm 1; use `training.clipnorm` for that.

    Here α minimises the strictly convex `φ(α) = ½αᵀMα − Σ_i log α_i`, whose
    stationarity condition is the equation, by Newton's method in float64 with
    the standard damped step of self-concordant functions (Nesterov & Nemirovski)
    where the full step is not safe. φ is invariant under α_i → α_i/s_i,
    g_i → s_i g_i, so it is solved for the unit gradients (M divided by
    ‖g_i‖‖g_j‖, α_i multiplied by ‖g_i‖), from the best start on the ray of
    α_i ∝ 1/‖g_i‖ (exact for orthogonal or identical gradients). In those
    variables the Newton step is `δ = −α ⊙ (diag(α) M diag(α) + I)⁻¹ r` with
    `r = α ⊙ Mα − 1`, a system that is never singular. It stops when
    `max_i |r_i| ≤ 1e-10`, the relative error of every equation and (to first
    order) of every α_i; usually in 3–15 steps.

    Where no solution exists, which is exactly where no direction improves every
    task (0 is in the convex hull of the gradients: the point is
    Pareto-stationary, and MGDA's direction is 0 too), φ is unbounded below and
    the iterates grow without bound; the weights are then 0 (no shared update).
    A nearly degenerate problem is accepted where rounding stops the residual
    above 1e-10 but below 1e-6. Tasks that are absent or whose gradient is 0 (or
    shorter than 1e-12 of the longest: it has no direction to bargain for) get
    weight 0 and the others are solved among themselves. Since the direction does
    not depend on the scale of any one task's gradient, base task weights do not
    change it. T is static; eager, `tf.function` and XLA (a `tf.while_loop`).

    Args:
        gram: `[T, T]` Gram matrix of the task gradients (float64 recommended).
        present: `[T]`, 1 for tasks in the batch, 0 for absent ones.

    Returns:
        `[T]` weights in the dtype of `gram`.
    """
    dtype = gram.dtype
    num_tasks = gram.shape[0]
    k = tf.cast(gram, tf.float64)
    mask = tf.cast(present, tf.float64)
    norms_sq = tf.linalg.diag_part(k) * mask
    active = tf.cast(norms_sq > 1e-24 * tf.reduce_max(norms_sq), tf.float64) * mask
    norms = tf.sqrt(tf.where(active > 0, norms_sq, 1.0))
    # The cosines among active tasks; an inactive task's equation a_i² = 1 is decoupled (a_i = 1).
    pair = active[:, None] * active[None, :]
    cosines = k / (norms[:, None] * norms[None, :]) * pair + tf.linalg.diag(1.0 - active)
    eye = tf.eye(num_tasks, dtype=tf.float64)
    count = tf.reduce_sum(active)
    along = tf.reduce_sum(cosines * pair)
    start = tf.sqrt(tf.maximum(count, 1.0) / tf.maximum(along, 1e-300)) * active + (1.0 - active)

    def residual(a):
        return tf.reduce_max(tf.abs(a * tf.linalg.matvec(cosines, a) - 1.0))

    def phi(a):
        return 0.5 * tf.tensordot(a, tf.linalg.matvec(cosines, a), 1) - tf.reduce_sum(tf.math.log(a))

    def keep_going(iteration, a, best, best_residual, stalled):
        return (
            (iteration < MAX_ITERATIONS) & (best_residual > TOLERANCE) & (tf.reduce_max(a) < DIVERGED) & (stalled < 4)
        )

    def newton(iteration, a, best, best_residual, stalled):
        r = a * tf.linalg.matvec(cosines, a) - 1.0
        z = tf.linalg.solve(cosines * a[:, None] * a[None, :] + eye, r[:, None])[:, 0]
        decrement = tf.sqrt(tf.maximum(tf.tensordot(r, z, 1), 0.0))  # the Newton decrement λ
        full = a * (1.0 - z)
        inside = tf.reduce_all(z < 1.0)
        # λ < 1/4: the full step stays in the domain and converges quadratically; else take it where it
        # decreases φ (Armijo) and grows no α_i more than tenfold, otherwise the damped step 1/(1 + λ),
        # which always decreases φ and at most doubles an α_i (‖z‖ <= λ).
        safe_full = tf.where(inside, full, a)
        armijo = phi(safe_full) <= phi(a) - 0.25 * decrement**2
        take_full = (decrement < 0.25) | (inside & (tf.reduce_min(z) >= -9.0) & armijo)
        a = tf.where(take_full, safe_full, a * (1.0 - z / (1.0 + decrement)))
        now = residual(a)
        better = now < best_residual
        # Stalling counts only near the solution (rounding); far from it, φ's decrease is what counts.
        progress = (now < 0.5 * best_residual) | (best_residual > ACCEPTED)
        stalled = tf.where(progress, 0, stalled + 1)
        return (
            iteration + 1,
            a,
            tf.where(better, a, best),
            tf.where(better, now, best_residual),
            stalled,
        )

    _, _, best, best_residual, _ = tf.while_loop(
        keep_going,
        newton,
        (tf.constant(0), start, start, residual(start), tf.constant(0)),
        maximum_iterations=MAX_ITERATIONS,
    )
    solved = (best_residual <= ACCEPTED) & (count > 0) & (tf.reduce_max(best) < DIVERGED)
    alpha = tf.where(solved, best / norms * active, tf.zeros_like(best))
    return tf.cast(alpha, dtype)


@WEIGHTINGS.register("nash_mtl")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class NashMTL(GradientWeighting):
    """Moves along the Nash bargaining solution of the task gradients (Navon et al., ICML 2022).

    Every step solves `GGᵀα = 1/α` exactly (`nash_weights`); the shared
    parameters move along `Σ_i α_i g_i`, task-specific ones along the plain
    gradient of `Σ_i w_i L_i`.

    Args:
        task_names: the tasks, in order.
        task_weights: base weights w_i (gradients are of w_i·L_i; they do not change
            the shared direction, which is invariant to each task's gradient scale).
    """

    def shared_gradient(self, task_gradients, task_losses, present):
        wide = tf.cast(task_gradients, tf.float64)
        alpha = nash_weights(tf.matmul(wide, wide, transpose_b=True), present)
        alpha = tf.stop_gradient(tf.cast(alpha, task_gradients.dtype))
        return tf.linalg.matvec(task_gradients, alpha, transpose_a=True), alpha
