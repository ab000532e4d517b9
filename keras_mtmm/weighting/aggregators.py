"""Gradient aggregators: pure functions on the matrix of per-task gradients, for any training loop.

    from keras_mtmm.weighting import aggregators
    direction, weights = aggregators.cagrad(G, c=0.5)   # G: [T, D] per-task gradients

Each `<name>(G, ..., present=None) -> (direction [D], weights [T] or None)`
takes the task gradients as rows of `G` (a tensor or array, float32 or
float64) and returns the update direction and the task weights it applies,
`direction = Σ_i weights_i G_i`; `weights` is None for a method whose
direction is not a linear combination of the task gradients (`graddrop`
keeps or drops each coordinate of each gradient). A method with state
across steps takes it as an argument and returns its next value third:
`gradvac(G, targets) -> (direction, weights, new_targets)`,
`db_mtl(G, ema, step) -> (direction, weights, new_ema)`; pass the new value
to the next call. `present` (`[T]`, 1/0) leaves tasks absent from a batch out:
they get weight 0 and do not change the others'. Each runs eagerly, in
`tf.function` and under XLA; T must be static. The training strategies of the
same names (`weighting.strategy`) call these functions.

Not here, because they are not functions of G alone: GradNorm (it learns its
weights from the loss history), uncertainty weighting, DWA, RLW and FAMO
(loss weights, no per-task gradients; FAMO's update formulas are pure
functions in `keras_mtmm.weighting.famo`: `famo_weights`,
`famo_logit_gradient`, `adam_step`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_mtmm.weighting.aligned_mtl import aligned_weights
from keras_mtmm.weighting.cagrad import cagrad_weights
from keras_mtmm.weighting.db_mtl import LOG_EPSILON, db_mtl_update
from keras_mtmm.weighting.graddrop import graddrop_direction, open_uniform
from keras_mtmm.weighting.gradvac import gradvac_weights, task_orders
from keras_mtmm.weighting.imtl import imtl_weights
from keras_mtmm.weighting.mgda import min_norm_weights
from keras_mtmm.weighting.nash_mtl import nash_weights
from keras_mtmm.weighting.upgrad import upgrad_weights

__all__ = [
    "aligned_mtl",
    "cagrad",
    "db_mtl",
    "graddrop",
    "gradvac",
    "imtl",
    "mean",
    "mgda",
    "nash_mtl",
    "pcgrad",
    "sum",
    "upgrad",
]


def _inputs(G, present):
    G = tf.convert_to_tensor(G)
    if not G.dtype.is_floating:
        G = tf.cast(G, tf.float32)
    if G.shape.rank != 2 or G.shape[0] is None:
        raise ValueError(f"aggregators: G must be [T, D] with a static T, got shape {G.shape}")
    num_tasks = G.shape[0]
    present = tf.ones([num_tasks], G.dtype) if present is None else tf.cast(tf.convert_to_tensor(present), G.dtype)
    return G * present[:, None], present


def _combine(G, weights):
    return tf.linalg.matvec(G, weights, transpose_a=True), weights


def _gram64(G):
    """The Gram matrix `G Gᵀ` computed in float64 (float32 rounding would limit what the solvers can reach)."""
    wide = tf.cast(G, tf.float64)
    return tf.matmul(wide, wide, transpose_b=True)


def mean(G, present=None):
    """The mean of the present tasks' gradients (Σ_i G_i / #present)."""
    G, present = _inputs(G, present)
    return _combine(G, present / tf.maximum(tf.reduce_sum(present), 1.0))


def sum(G, present=None):  # noqa: A001 (the API's name)
    """The sum of the present tasks' gradients: what `weighting.strategy: static` with weights 1 trains on."""
    G, present = _inputs(G, present)
    return _combine(G, present)


def pcgrad(G, order=None, seed=None, present=None):
    """PCGrad (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020, Algorithm 1).

    For each task i, for j in `order` (j ≠ i, one order for every i, as the
    paper's Algorithm 1 draws it once per step): if `g_i·g_j < 0`,
    `g_i ← g_i − (g_i·g_j / ‖g_j‖²) g_j`, where g_j is the *original* gradient of
    task j; the direction is the sum of the projected g_i. A task is never
    projected on itself (LibMTL's implementation also tries j = i, which does
    nothing since g_i·g_i ≥ 0). Computed on the T×T Gram matrix, tracking each
    projected g_i as a combination of the original gradients, so the weights
    come out exactly. Absent and zero gradients are skipped.

    Args:
        G: `[T, D]` task gradients.
        order: a permutation of range(T) (tensor or list); default: a random one,
            from `seed` (stateless, `[2]` ints or one int) if given.
        seed: see `order`.
        present: `[T]` 1/0.
    """
    G, present = _inputs(G, present)
    num_tasks = G.shape[0]
    if order is None:
        if seed is None:
            order = tf.random.shuffle(tf.range(num_tasks))
        else:
            seed = tf.constant([int(seed), 0]) if isinstance(seed, int) else tf.convert_to_tensor(seed)
            order = tf.argsort(tf.random.stateless_uniform([num_tasks], seed))
    order = tf.cast(tf.convert_to_tensor(order), tf.int32)
    gram = tf.cast(tf.matmul(G, G, transpose_b=True), tf.float64)
    rows = []
    for i in range(num_tasks):
        row = tf.one_hot(i, num_tasks, dtype=tf.float64)  # projected g_i = row · G
        for position in range(num_tasks):
            j = order[position]
            dot = tf.tensordot(row, gram[:, j], 1)
            norm_sq = gram[j, j]
            conflict = (j != i) & (dot < 0) & (norm_sq > 0)
            row = tf.where(
                conflict,
                row - dot / tf.where(norm_sq > 0, norm_sq, 1.0) * tf.one_hot(j, num_tasks, dtype=tf.float64),
                row,
            )
        rows.append(row)
    weights = tf.cast(tf.add_n(rows), G.dtype) * present
    return _combine(G, weights)


def cagrad(G, c: float = 0.4, present=None):
    """CAGrad (Liu et al., NeurIPS 2021, Eq. 2): `d = g0 + (c‖g0‖/‖g_w‖) g_w`, solved exactly.

    See `keras_mtmm.weighting.cagrad.cagrad_weights` for the method: no
    division by 1 + c² (LibMTL's `rescale=1`), any gradient scale.
    """
    if c < 0:
        raise ValueError(f"aggregators.cagrad: c must be >= 0, got {c}")
    G, present = _inputs(G, present)
    return _combine(G, cagrad_weights(tf.matmul(G, G, transpose_b=True), present, c))


def mgda(G, present=None):
    """MGDA (Sener & Koltun, NeurIPS 2018, Eq. 3): the min-norm point of the convex hull of the gradients.

    Exact (`keras_mtmm.weighting.mgda.min_norm_weights`). Applied to whatever G
    holds: the training strategy `mgda` passes gradients of the shared
    *representation* (MGDA-UB, the paper's Section 3.3), which needs one
    Jacobian of a small tensor instead of per-task gradients of every shared
    parameter.
    """
    G, present = _inputs(G, present)
    return _combine(G, min_norm_weights(tf.matmul(G, G, transpose_b=True), present))


def graddrop(G, leak=0.0, uniform=None, seed=None, present=None):
    """GradDrop (Chen et al., "Just Pick a Sign", NeurIPS 2020, Eq. 1–3): per coordinate, one sign survives.

    With `P = ½(1 + Σ_i g_i / Σ_i |g_i|)` per coordinate and a uniform draw U,
    task i keeps the coordinate where `[P > U]·[g_i > 0] + [P < U]·[g_i < 0]`;
    the direction is the sum of what is kept (plus `leak` times the rest). Where
    every task's gradient has the same sign, that is the plain sum. See
    `keras_mtmm.weighting.graddrop.graddrop_direction`.

    Args:
        G: `[T, D]` task gradients (the columns are what GradDrop picks signs for).
        leak: scalar or `[T]` in [0, 1] (0: the paper's GradDrop).
        uniform: `[D]` draws in (0, 1); default: drawn, from `seed` (stateless,
            an int or `[2]` ints) if given.
        seed: see `uniform`.
        present: `[T]` 1/0.

    Returns:
        `(direction [D], None)`: not a linear combination of the rows of G.
    """
    if not tf.is_tensor(leak) and np.any((np.asarray(leak) < 0) | (np.asarray(leak) > 1)):
        raise ValueError(f"aggregators.graddrop: leak must be in [0, 1], got {leak}")
    G, present = _inputs(G, present)
    if uniform is None:
        uniform = open_uniform(tf.shape(G)[1:], seed, G.dtype)
    return graddrop_direction(G, uniform, leak, present), None


def gradvac(G, targets=None, beta: float = 0.5, order=None, seed=None, present=None):
    """GradVac (Wang et al., "Gradient Vaccine", ICLR 2021, Algorithm 1, Eq. 6), exact, with its targets.

    Each g_i is moved, pair by pair in random order, until its cosine with g_j
    reaches the EMA target φ̂_ij where it was below; the direction is the sum.
    See `keras_mtmm.weighting.gradvac.gradvac_weights` for the conventions
    (the paper's unconditional EMA update, pairs with a zero gradient
    skipped). Computed on the Gram matrix, so the weights are exact; with zero
    targets it is PCGrad.

        targets = None                     # zeros: the paper's start
        for G in steps:
            direction, weights, targets = aggregators.gradvac(G, targets, beta=0.5)

    Args:
        G: `[T, D]` task gradients.
        targets: `[T, T]` φ̂ from the previous call (None: zeros).
        beta: the EMA rate β in [0, 1].
        order: the visiting order: `[T]` (one for every task, as `pcgrad` takes it)
            or `[T, T]` (row i for task i); default: a random permutation per task,
            from `seed` (stateless, an int or `[2]` ints) if given.
        seed: see `order`.
        present: `[T]` 1/0 (an absent task's targets stay as they were).

    Returns:
        `(direction [D], weights [T], new targets [T, T])`.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"aggregators.gradvac: beta must be in [0, 1], got {beta}")
    G, present = _inputs(G, present)
    num_tasks = G.shape[0]
    targets = tf.zeros([num_tasks, num_tasks], G.dtype) if targets is None else tf.convert_to_tensor(targets, G.dtype)
    gram = tf.matmul(G, G, transpose_b=True)
    weights, targets = gradvac_weights(gram, targets, present, beta, task_orders(num_tasks, order, seed))
    return (*_combine(G, weights), targets)


def db_mtl(G, ema=None, step=1, beta: float = 0.9, beta_sigma: float = 0.0, losses=None, present=None):
    """DB-MTL (Lin et al., "Dual-Balancing for Multi-Task Learning", 2023): EMA gradients at the largest norm.

    `ĝ_i ← β_t ĝ_i + (1 − β_t) g_i` with `β_t = β / step^σ`, then
    `direction = max_j ‖ĝ_j‖ · Σ_i ĝ_i / ‖ĝ_i‖`, where g_i is the gradient of
    `log(L_i + ε)`. See `keras_mtmm.weighting.db_mtl.db_mtl_update`.

        ema = None
        for step, (G, L) in enumerate(steps, start=1):   # G: gradients of the losses L
            direction, alpha, ema = aggregators.db_mtl(G, ema, step, losses=L)

    Args:
        G: `[T, D]` gradients of the log-losses, or of the losses if `losses` is given.
        ema: `[T, D]` ĝ from the previous call (None: zeros, the first step).
        step: the number of this step, from 1 (only matters with beta_sigma > 0).
        beta: β in [0, 1) (0: no EMA).
        beta_sigma: σ >= 0.
        losses: `[T]` the task losses L_i: G's rows are then divided by L_i + ε,
            the chain rule of the log transform.
        present: `[T]` 1/0 (an absent task's ĝ stays as it was).

    Returns:
        `(direction [D], weights [T], new ema [T, D])`: the weights are α, the factors on
        the rows of the *new EMA* (`direction = Σ_i α_i ĝ_i`; on the rows of G with beta = 0).
    """
    if not 0.0 <= beta < 1.0 or beta_sigma < 0:
        raise ValueError(f"aggregators.db_mtl: beta in [0, 1) and beta_sigma >= 0 expected, got {beta}, {beta_sigma}")
    G, present = _inputs(G, present)
    if losses is not None:
        G = G / (tf.cast(tf.convert_to_tensor(losses), G.dtype) + LOG_EPSILON)[:, None]
    ema = tf.zeros_like(G) if ema is None else tf.convert_to_tensor(ema, G.dtype)
    return db_mtl_update(G, ema, step, beta, beta_sigma, present)


def nash_mtl(G, present=None):
    """Nash-MTL (Navon et al., ICML 2022, Eq. 3): α > 0 with `(GGᵀ)α = 1/α`, `d = Σ_i α_i g_i`, exactly.

    See `keras_mtmm.weighting.nash_mtl.nash_weights`: ‖d‖² = #tasks at every
    gradient scale; weights 0 where no direction improves every task (0 in the
    convex hull of the gradients) and for zero gradients.
    """
    G, present = _inputs(G, present)
    return _combine(G, tf.cast(nash_weights(_gram64(G), present), G.dtype))


def imtl(G, present=None):
    """IMTL-G (Liu et al., ICLR 2021, Section 3.2): Σα = 1 and d = Σ_i α_i g_i projects equally on every g_i/‖g_i‖.

    Exact (`keras_mtmm.weighting.imtl.imtl_weights`, which also says what
    degenerate gradients get); the weights may be negative, as in the paper.
    """
    G, present = _inputs(G, present)
    return _combine(G, tf.cast(imtl_weights(_gram64(G), present), G.dtype))


def upgrad(G, present=None):
    """UPGrad (Quinton & Rey 2024): the mean of the gradients each projected onto the dual cone {x : G x ≥ 0}.

    Exact (`keras_mtmm.weighting.upgrad.upgrad_weights`): G·d ≥ 0 for every
    task, no regularisation of the Gram matrix (TorchJD adds 1e-4 to its diagonal).
    """
    G, present = _inputs(G, present)
    return _combine(G, tf.cast(upgrad_weights(_gram64(G), present), G.dtype))


def aligned_mtl(G, task_weights=None, present=None):
    """Aligned-MTL (Senushkin et al., CVPR 2023, Algorithm 1): `d = Ĝᵀw`, Ĝ = B G with equal singular values.

    `B = sqrt(λ_min) V Λ^{-1/2} Vᵀ` from `GGᵀ = VΛVᵀ` over the eigenvalues above
    `λ_max·T·ε` (ε: G's machine epsilon), the weights `α = B w`; w: the task
    importances (`task_weights`, 1 each by default, as LibMTL). See
    `keras_mtmm.weighting.aligned_mtl.aligned_weights`.
    """
    G, present = _inputs(G, present)
    if task_weights is not None:
        task_weights = tf.cast(tf.convert_to_tensor(task_weights), tf.float64)
        if task_weights.shape != (G.shape[0],):
            raise ValueError(f"aggregators.aligned_mtl: task_weights must be [{G.shape[0]}], got {task_weights.shape}")
    epsilon = float(np.finfo(G.dtype.as_numpy_dtype).eps)
    return _combine(G, tf.cast(aligned_weights(_gram64(G), present, task_weights, epsilon), G.dtype))
