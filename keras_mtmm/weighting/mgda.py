"""MGDA-UB: the min-norm combination of task gradients on the shared representation.

Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization",
NeurIPS 2018. The upper bound (UB) uses gradients with respect to the shared
representation Z (the fused features entering the sharing block) instead of
all shared parameters: one Jacobian of a small tensor.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_mtmm.distributed import replica_sum
from keras_mtmm.registries import WEIGHTINGS
from keras_mtmm.weighting.gradient import GradientWeighting, weighted_gradient

ABSENT_PENALTY = 1e12


def min_norm_weights(gram: tf.Tensor, present: tf.Tensor, iterations: int = 50) -> tf.Tensor:
    """Weights α on the simplex minimising ‖Σ_i α_i g_i‖², from the Gram matrix `G Gᵀ`.

    Closed form for two tasks; Frank–Wolfe (the paper's Algorithm 2) for more.
    Absent tasks (present = 0) get weight 0.
    """
    num_tasks = gram.shape[0]
    dtype = gram.dtype
    penalty = ABSENT_PENALTY * tf.reduce_max(tf.abs(gram)) + 1.0
    gram = gram + tf.linalg.diag((1.0 - present) * penalty)
    if num_tasks == 2:
        g11, g12, g22 = gram[0, 0], gram[0, 1], gram[1, 1]
        denominator = g11 - 2 * g12 + g22
        alpha = tf.where(denominator > 0, (g22 - g12) / tf.maximum(denominator, 1e-20), tf.constant(0.5, dtype))
        alpha = tf.clip_by_value(alpha, 0.0, 1.0)
        return tf.stack([alpha, 1.0 - alpha])
    count = tf.maximum(tf.reduce_sum(present), 1.0)
    alpha = present / count
    for _ in range(iterations):
        gradient = tf.linalg.matvec(gram, alpha)
        t = tf.argmin(gradient)
        vertex = tf.one_hot(t, num_tasks, dtype=dtype)
        # Exact line search between alpha and the vertex.
        v_alpha = tf.tensordot(alpha, tf.linalg.matvec(gram, alpha), 1)
        v_vertex = gram[t, t]
        v_cross = tf.tensordot(vertex, tf.linalg.matvec(gram, alpha), 1)
        denominator = v_alpha - 2 * v_cross + v_vertex
        step = tf.where(denominator > 0, (v_alpha - v_cross) / tf.maximum(denominator, 1e-20), tf.constant(0.0, dtype))
        step = tf.clip_by_value(step, 0.0, 1.0)
        alpha = (1 - step) * alpha + step * vertex
    return alpha


@WEIGHTINGS.register("mgda")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class MGDA(GradientWeighting):
    """Trains on `Σ_i α_i L_i` with α the min-norm point of the representation gradients.

    Args:
        task_names: the tasks, in order.
        task_weights: base weights w_i applied to the losses before α is found.
    """

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
