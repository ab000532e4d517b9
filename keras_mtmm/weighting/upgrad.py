"""UPGrad: the mean of the task gradients, each projected onto the cone of directions that harm no task.

Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024
(arXiv:2406.16232); TorchJD's `UPGrad`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.weighting.gradient import GradientWeighting
from keras_mtmm.weighting.mgda import MAX_ENUMERATED_TASKS


def upgrad_weights(gram: tf.Tensor, present: tf.Tensor) -> tf.Tensor:
    """UPGrad's weights: `d = (1/T) Σ_i π(g_i)`, π the projection onto the dual cone `{x : G x ≥ 0}`, exactly.

    Quinton & Rey 2024, Definition of UPGrad (Section 4, with uniform
    preferences, TorchJD's default) and Proposition 1: `π(g_i) = Gᵀ v_i` with
    `v_i = argmin_{v ≥ e_i} vᵀ K v`, K = G Gᵀ; the weights are `(1/T) Σ_i v_i`
    (T: the present tasks). Every G·d ≥ 0: the update conflicts with no task.

    Each small QP is solved exactly by enumerating its active sets. The
    optimum can be taken at a vertex of its solution set, where the free
    coordinates F (v_j > (e_i)_j) have linearly independent gradients: there
    `K_FF v_F = −K_{F,A} (e_i)_A`, `v_A = (e_i)_A`. All 2^T sets F and all T right
    sides are solved at once (batched LU in float64, one step of iterative
    refinement), and a candidate is kept where it satisfies the KKT conditions
    (v ≥ e_i and `(Kv)_A ≥ 0`, to 1e-9 relative; sufficient for a convex QP), the
    smallest objective among them. No iteration count, no regularisation (TorchJD
    adds 1e-4 to K's diagonal, which moves its weights by about that much). K is
    divided by its largest present diagonal entry first: the weights do not
    depend on the gradients' scale. Absent tasks get weight 0 and are not
    constraints; a zero gradient constrains nothing and projects to 0 (its
    weight 1/T multiplies a zero vector). T is static; eager, `tf.function` and
    XLA; 2^T systems, cheap for T ≤ ~10.

    Args:
        gram: `[T, T]` Gram matrix of the task gradients (float64 recommended).
        present: `[T]`, 1 for tasks in the batch, 0 for absent ones.

    Returns:
        `[T]` weights in the dtype of `gram` (each >= 1/T for a present task).
    """
    dtype = gram.dtype
    num_tasks = gram.shape[0]
    mask = tf.cast(present, tf.float64)
    k = tf.cast(gram, tf.float64) * mask[:, None] * mask[None, :]
    scale = tf.reduce_max(tf.linalg.diag_part(k))
    # An absent task costs v_j² and is otherwise free: its v_j is 0.
    k = k / tf.where(scale > 0, scale, 1.0) + tf.linalg.diag(1.0 - mask)
    free = tf.constant(ALL_SUBSETS[num_tasks], tf.float64)[:, :, None]  # [N, T, 1]: 1 where v_j is free
    eye = tf.eye(num_tasks, dtype=tf.float64)
    # Column i: the QP of task i. Fixed coordinates take (e_i)_j; free ones solve K_FF v_F = −K_FA (e_i)_A.
    fixed_part = (1.0 - free) * eye[None]  # [N, T, T]
    systems = k[None] * free * tf.transpose(free, [0, 2, 1]) + tf.linalg.diag(1.0 - free[:, :, 0])
    right = fixed_part - free * tf.matmul(tf.broadcast_to(k, tf.shape(systems)), fixed_part)
    regular = systems + 1e-13 * eye  # a dependent F is singular: 1e-13·I keeps LU from failing
    v = tf.linalg.solve(regular, right)
    v += tf.linalg.solve(regular, right - tf.matmul(systems, v))
    size = 1.0 + tf.reduce_max(tf.abs(v), axis=1)  # [N, T]
    residual = tf.reduce_max(tf.abs(tf.matmul(systems, v) - right), axis=1)
    multipliers = tf.matmul(tf.broadcast_to(k, tf.shape(systems)), v)  # Kv: 0 on F, >= 0 on the fixed set
    feasible = (
        (residual <= 1e-9 * size)
        & tf.reduce_all(v - eye[None] >= -1e-9 * size[:, None, :], axis=1)
        & tf.reduce_all((1.0 - free) * multipliers >= -1e-9 * size[:, None, :], axis=1)
        & tf.reduce_all(tf.math.is_finite(v), axis=1)
    )  # [N, T]
    objective = tf.einsum("nji,jk,nki->ni", v, k, v)
    best = tf.argmin(tf.where(feasible, objective, tf.constant(float("inf"), tf.float64)), axis=0)  # [T]
    chosen = tf.gather(tf.transpose(v, [2, 0, 1]), best, batch_dims=1)  # [T (task i), T (coordinate)]
    # Without a feasible candidate (rounding alone could cause it), task i keeps its own gradient.
    chosen = tf.where(tf.reduce_any(feasible, axis=0)[:, None], tf.maximum(chosen, 0.0), eye)
    weights = tf.reduce_sum(chosen * mask[:, None], axis=0) * mask / tf.maximum(tf.reduce_sum(mask), 1.0)
    return tf.cast(weights, dtype)


class _AllSubsets(dict):
    """T -> the 2^T subsets of range(T), the empty one included, as 0/1 rows, built once per T."""

    def __missing__(self, num_tasks: int) -> list[list[float]]:
        if num_tasks > MAX_ENUMERATED_TASKS:
            raise ValueError(
                f"upgrad enumerates the 2^T active sets: at most {MAX_ENUMERATED_TASKS} tasks, got {num_tasks}"
            )
        self[num_tasks] = [[float(bits >> i & 1) for i in range(num_tasks)] for bits in range(2**num_tasks)]
        return self[num_tasks]


ALL_SUBSETS = _AllSubsets()


@WEIGHTINGS.register("upgrad")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class UPGrad(GradientWeighting):
    """Moves along the mean of the task gradients projected onto their dual cone (Quinton & Rey 2024).

    Every step solves the T projections exactly (`upgrad_weights`); the shared
    parameters move along `Σ_i α_i g_i`, which conflicts with no task
    (`g_j·d ≥ 0`), task-specific ones along the plain gradient of `Σ_i w_i L_i`.

    Args:
        task_names: the tasks, in order.
        task_weights: base weights w_i (gradients are of w_i·L_i).
    """

    max_tasks = MAX_ENUMERATED_TASKS  # the exact solver's 2^T active sets

    def shared_gradient(self, task_gradients, task_losses, present):
        wide = tf.cast(task_gradients, tf.float64)
        alpha = upgrad_weights(tf.matmul(wide, wide, transpose_b=True), present)
        alpha = tf.stop_gradient(tf.cast(alpha, task_gradients.dtype))
        return tf.linalg.matvec(task_gradients, alpha, transpose_a=True), alpha
