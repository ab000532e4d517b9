"""Aligned-MTL: the task gradients aligned to equal singular values before they are combined.

Senushkin, Patakin, Kuznetsov, Konushin, "Independent Component Alignment for
Multi-Task Learning", CVPR 2023.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.weighting.gradient import GradientWeighting

MAX_SWEEPS = 30


def symmetric_eigen(matrix: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Eigenvalues and eigenvectors of a small symmetric float64 matrix, to float64 rounding, also under XLA.

    `tf.linalg.eigh` (LAPACK eagerly and in graphs; under XLA an iterative
    method that stops near 1e-6 relative), then cyclic Jacobi sweeps on
    `VᵀAV` (Golub & Van Loan, Section 8.5) until its off-diagonal part is below
    1e-14 of its norm: none or one where eigh was exact, two or three under XLA.

    Returns:
        `(eigenvalues [T], eigenvectors [T, T])`, `A = V diag(λ) Vᵀ`, unordered.
    """
    size = matrix.shape[0]
    _, vectors = tf.linalg.eigh(matrix)
    rotated = tf.matmul(vectors, tf.matmul(matrix, vectors), transpose_a=True)
    eye = tf.eye(size, dtype=tf.float64)
    pairs = [(p, q) for p in range(size) for q in range(p + 1, size)]

    def off_diagonal(a):
        return tf.norm(a - tf.linalg.diag(tf.linalg.diag_part(a)))

    def unconverged(sweep, a, v):
        return (sweep < MAX_SWEEPS) & (off_diagonal(a) > 1e-14 * tf.norm(a))

    @tf.autograph.experimental.do_not_convert
    def sweep_once(sweep, a, v):
        for p, q in pairs:
            apq = a[p, q]
            tau = (a[q, q] - a[p, p]) / (2.0 * tf.where(apq != 0, apq, 1.0))
            sign = tf.where(tau >= 0, tf.ones_like(tau), -tf.ones_like(tau))
            t = tf.where(apq != 0, sign / (tf.abs(tau) + tf.sqrt(1.0 + tau * tau)), tf.zeros_like(tau))
            c = 1.0 / tf.sqrt(1.0 + t * t)
            s = t * c
            rotation = tf.tensor_scatter_nd_update(eye, [[p, p], [q, q], [p, q], [q, p]], tf.stack([c, c, s, -s]))
            a = tf.matmul(rotation, tf.matmul(a, rotation), transpose_a=True)
            v = tf.matmul(v, rotation)
        return sweep + 1, a, v

    _, rotated, vectors = tf.while_loop(unconverged, sweep_once, (tf.constant(0), rotated, vectors))
    return tf.linalg.diag_part(rotated), vectors


def aligned_weights(gram: tf.Tensor, present: tf.Tensor, task_weights=None, epsilon: float | None = None):
    """Aligned-MTL's weights `α = B w`, `B = sqrt(λ_min) V Λ^{-1/2} Vᵀ` from `M = G Gᵀ = V Λ Vᵀ`.

    Senushkin et al., CVPR 2023, Algorithm 1 (Eq. 9–10): the aligned gradient
    matrix `Ĝ = σ_min U Vᵀ` (G's SVD with all singular values set to the smallest)
    is `B G`, and the update is `Ĝᵀ w = Gᵀ(B w)`; w are the task importances (1
    each by default, as LibMTL's `B.sum(0)`; TorchJD uses 1/T). The eigenvalues
    kept are those above `λ_max · T · epsilon` (LibMTL's and TorchJD's rank
    tolerance, epsilon their float32 machine epsilon; here the input gradients'
    by default), λ_min is the smallest kept. B does not change when G is scaled,
    so the direction scales with G. Solved in float64 with `symmetric_eigen`, so
    XLA gives the same B as LAPACK. Absent tasks and tasks with w_i = 0 are left
    out (weight 0); where no eigenvalue is kept (all gradients 0), the weights are 0.

    Args:
        gram: `[T, T]` Gram matrix of the task gradients (float64 recommended).
        present: `[T]`, 1 for tasks in the batch, 0 for absent ones.
        task_weights: `[T]` task importances w (default 1 each).
        epsilon: relative rank tolerance per task (default: float32's machine epsilon).

    Returns:
        `[T]` weights in the dtype of `gram`.
    """
    dtype = gram.dtype
    num_tasks = gram.shape[0]
    w = tf.ones([num_tasks], tf.float64) if task_weights is None else tf.cast(task_weights, tf.float64)
    mask = tf.cast(present, tf.float64) * tf.cast(w > 0, tf.float64)
    k = tf.cast(gram, tf.float64) * mask[:, None] * mask[None, :]
    scale = tf.reduce_max(tf.linalg.diag_part(k))
    k = k / tf.where(scale > 0, scale, 1.0)
    eigenvalues, vectors = symmetric_eigen(k)
    epsilon = float(np.finfo(np.float32).eps) if epsilon is None else float(epsilon)
    kept = eigenvalues > tf.reduce_max(eigenvalues) * num_tasks * epsilon
    smallest = tf.reduce_min(tf.where(kept, eigenvalues, tf.constant(float("inf"), tf.float64)))
    factors = tf.where(kept, tf.sqrt(smallest / tf.where(kept, eigenvalues, 1.0)), 0.0)
    balance = tf.matmul(vectors * factors[None, :], vectors, transpose_b=True)  # B
    alpha = tf.linalg.matvec(balance, w * mask) * mask
    return tf.cast(tf.where(tf.reduce_any(kept) & (scale > 0), alpha, tf.zeros_like(alpha)), dtype)


@WEIGHTINGS.register("aligned_mtl")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class AlignedMTL(GradientWeighting):
    """Moves along the task gradients aligned to equal singular values (Senushkin et al., CVPR 2023).

    The shared parameters move along `Gᵀ(B w)` (`aligned_weights`), with G the
    gradients of the unweighted task losses and w the base task weights (the
    paper's task importances); task-specific ones along the plain gradient of
    `Σ_i w_i L_i`.

    Args:
        task_names: the tasks, in order.
        task_weights: the task importances w_i (1 each by default).
    """

    def shared_gradient(self, task_gradients, task_losses, present):
        # The base class passes gradients of w_i·L_i; Aligned-MTL aligns those of L_i and then applies w.
        weights = self.base_weights(task_gradients.dtype)
        divisor = tf.where(weights > 0, weights, 1.0)
        wide = tf.cast(task_gradients / divisor[:, None], tf.float64)
        alpha = aligned_weights(
            tf.matmul(wide, wide, transpose_b=True),
            present,
            weights,
            epsilon=float(np.finfo(task_gradients.dtype.as_numpy_dtype).eps),
        )
        # In units of the w_i-scaled gradients the base class works with (it multiplies by w again).
        effective = tf.stop_gradient(tf.cast(alpha, task_gradients.dtype) / divisor)
        return tf.linalg.matvec(task_gradients, effective, transpose_a=True), effective
