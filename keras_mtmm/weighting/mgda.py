"""MGDA-UB: the min-norm combination of task gradients on the shared representation.

Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization",
NeurIPS 2018. The upper bound (UB) uses gradients with respect to the shared
representation Z (the fused features entering the sharing block) instead of
all shared parameters: one Jacobian of a small tensor.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.weighting.gradient import GradientWeighting, weighted_gradient
from keras_mtmm.weighting.replicas import replica_sum


def min_norm_weights(gram: tf.Tensor, present: tf.Tensor) -> tf.Tensor:
    """The weights α on the simplex (over present tasks) minimising ‖Σ_i α_i g_i‖² = αᵀKα, exactly.

    MGDA's subproblem (Sener & Koltun 2018, Eq. 3; their Algorithm 2 approximates
    it by Frank–Wolfe, which zig-zags when the optimum lies on an edge of the
    simplex). Here it is solved exactly from the Gram matrix K = G Gᵀ by support
    enumeration: the optimum lies in the relative interior of one face S of the
    simplex, where it is the affine min-norm point, `K_S α_S = λ1, 1ᵀα_S = 1`
    (the KKT conditions with equality on the support). Every non-empty subset of
    the present tasks is solved at once (batched LU solves of the bordered
    `[[K_S, −1], [1ᵀ, 0]]` systems, singular for affinely dependent
    gradients, which are skipped), the candidates with α ≥ 0 are kept,
    and the one with the smallest αᵀKα wins. Exact to float64 rounding, with no
    iteration count; 2^T − 1 small systems, cheap for T ≤ ~10. K is divided by
    its largest present diagonal entry first, so the weights do not depend on
    the gradients' scale. T is static. Runs eagerly, in `tf.function` and
    under XLA; float32 or float64 in, the input dtype out.

    Args:
        gram: `[T, T]` Gram matrix of the task gradients.
        present: `[T]`, 1 for tasks in the batch, 0 for absent ones (weight 0).

    Returns:
        `[T]` weights, summing to 1 over the present tasks (uniform over them
        when every present gradient is zero; all zero when none is present).
    """
    dtype = gram.dtype
    num_tasks = gram.shape[0]
    k = tf.cast(gram, tf.float64)
    mask = tf.cast(present, tf.float64)
    k = k * mask[:, None] * mask[None, :]
    scale = tf.reduce_max(tf.linalg.diag_part(k))
    k = k / tf.where(scale > 0, scale, 1.0)
    subsets = tf.constant(SUBSETS[num_tasks], tf.float64)  # [N, T], every non-empty subset
    allowed = tf.reduce_all((subsets <= mask[None, :]), axis=1)  # subsets of the present tasks only
    size = num_tasks + 1
    matrices = bordered_systems(k, subsets)
    rhs = tf.one_hot(num_tasks, size, dtype=tf.float64)
    # A subset of affinely dependent gradients has a singular system: the 1e-13·I keeps LU from failing,
    # and the residual against the exact system rejects what it made up. Every kept candidate is a
    # feasible point, and the optimum is the min-norm point of an affinely independent subset
    # (Carathéodory), whose system is regular: the smallest kept value is the optimum.
    regular = matrices + 1e-13 * tf.eye(size, dtype=tf.float64)
    solutions = tf.linalg.solve(regular, tf.broadcast_to(rhs, tf.shape(matrices)[:2])[:, :, None])[:, :, 0]
    alphas = tf.where(tf.math.is_finite(solutions[:, :num_tasks]), solutions[:, :num_tasks], -1.0)
    residual = tf.norm(tf.linalg.matvec(matrices, solutions) - rhs[None], axis=1)
    accurate = residual <= 1e-9  # K is scaled to entries <= 1 and the right side is e_T; NaN compares False
    feasible = allowed & tf.reduce_all(alphas >= -1e-9, axis=1) & accurate
    values = tf.einsum("ni,ij,nj->n", alphas, k, alphas)
    best = tf.argmin(tf.where(feasible, values, tf.constant(float("inf"), tf.float64)))
    alpha = tf.maximum(tf.gather(alphas, best), 0.0) * mask
    count = tf.reduce_sum(mask)
    uniform = mask / tf.maximum(count, 1.0)
    alpha = alpha / tf.maximum(tf.reduce_sum(alpha), 1e-300)
    # No feasible candidate can only mean no present task; all-zero gradients: uniform (any α is optimal).
    alpha = tf.where(tf.reduce_any(feasible) & (scale > 0), alpha, uniform)
    return tf.cast(alpha, dtype)


def bordered_systems(k: tf.Tensor, subsets: tf.Tensor) -> tf.Tensor:
    """`[N, T + 1, T + 1]`: for each 0/1 subset row S, `[[K_S, −1_S], [1_Sᵀ, 0]]` with identity rows outside S.

    Rows in S: `(K x)_S − μ 1 = ...`; rows outside S: `x_i = ...`; the last row: `Σ_S x = ...`.
    It is regular exactly when the gradients of S are affinely independent.
    """
    inside = subsets[:, :, None] * subsets[:, None, :]
    top_left = k[None] * inside + tf.linalg.diag(1.0 - subsets)
    top = tf.concat([top_left, -subsets[:, :, None]], axis=2)
    bottom = tf.concat([subsets, tf.zeros_like(subsets[:, :1])], axis=1)[:, None, :]
    return tf.concat([top, bottom], axis=1)


def _subsets(num_tasks: int) -> list[list[float]]:
    return [[float(bits >> i & 1) for i in range(num_tasks)] for bits in range(1, 2**num_tasks)]


# The exact solvers enumerate the 2^T − 1 supports: 4,095 systems of 13×13 at T = 12, a few MB per step;
# at T = 16 it would be 65,535 (150 MB). Beyond this, `weighting.strategy` validation refuses them.
MAX_ENUMERATED_TASKS = 12


class _Subsets(dict):
    """T -> the 2^T − 1 non-empty subsets of range(T) as 0/1 rows, built once per T (T ≤ MAX_ENUMERATED_TASKS)."""

    def __missing__(self, num_tasks: int) -> list[list[float]]:
        if num_tasks > MAX_ENUMERATED_TASKS:
            raise ValueError(
                f"the exact solver enumerates the 2^T - 1 supports of the simplex: at most "
                f"{MAX_ENUMERATED_TASKS} tasks, got {num_tasks}"
            )
        self[num_tasks] = _subsets(num_tasks)
        return self[num_tasks]


SUBSETS = _Subsets()


@WEIGHTINGS.register("mgda")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class MGDA(GradientWeighting):
    """Trains on `Σ_i α_i L_i` with α the min-norm point of the representation gradients.

    Args:
        task_names: the tasks, in order.
        task_weights: base weights w_i applied to the losses before α is found.
    """

    max_tasks = MAX_ENUMERATED_TASKS  # the exact solver's 2^T supports

    needs_representation = True

    def gradients(self, tape, task_losses, present, shared_variables, specific_variables, representation=None):
        if representation is None:
            raise ValueError("MGDA needs the shared representation (a model with a single fusion layer)")
        scale = self.base_weights(task_losses.dtype) * present
        jacobian = tape.jacobian(
            task_losses, representation, experimental_use_pfor=True, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        flat = tf.reshape(jacobian, [self.num_tasks, -1]) * scale[:, None]
        # Under tf.distribute the global Gram matrix is the replicas' sum (up to a scale α ignores).
        gram = replica_sum(tf.matmul(flat, flat, transpose_b=True))
        norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 1e-24))
        # MGDA-UB's conflicts are those of the representation gradients (cosines from the Gram matrix).
        self.cosine_sum.assign_add(
            tf.cast(tf.stop_gradient(gram / (norms[:, None] * norms[None, :])), self.cosine_sum.dtype)
        )
        alpha = tf.stop_gradient(min_norm_weights(gram, present))
        variables = list(shared_variables) + list(specific_variables)
        grads = weighted_gradient(tape, task_losses, variables, alpha * scale)
        return (
            grads[: len(shared_variables)],
            grads[len(shared_variables) :],
            alpha * self.base_weights(task_losses.dtype),
        )
