"""GradVac: gradient vaccine, pairwise cosine targets learned by an EMA.

Wang, Tsvetkov, Firat, Cao, "Gradient Vaccine: Investigating and Improving
Multi-task Optimization in Massively Multilingual Models", ICLR 2021.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from keras_mtmm.config.bounds import Bound
from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.weighting.gradient import GradientWeighting


def gradvac_weights(gram: tf.Tensor, targets: tf.Tensor, present: tf.Tensor, beta: float, orders: tf.Tensor):
    """GradVac's coefficients on the task gradients and the updated targets, exactly, from the Gram matrix.

    Wang et al. 2021, Algorithm 1 and Eq. 6. For each task i, for each j ≠ i in
    the order `orders[i]`: with `φ = cos(g_i', g_j)` (g_i' the modified gradient
    of task i so far, g_j the original one) and the target `φ̂ = targets[i, j]`,
    if `φ < φ̂`:

        g_i' ← g_i' + g_j · ‖g_i'‖ (φ̂ √(1 − φ²) − φ √(1 − φ̂²)) / (‖g_j‖ √(1 − φ̂²))

    which makes `cos(g_i', g_j) = φ̂`; then, whether or not g_i' changed (as the
    paper's Algorithm 1 has it; LibMTL updates only on a correction),
    `φ̂_ij ← (1 − β) φ̂_ij + β φ`. The direction is `Σ_i g_i'`. One target per
    task pair for the whole gradient (the paper also has per-layer targets;
    LibMTL's default `group_type: 0` is this one).

    Each g_i' is tracked as coefficients on the original gradients, so that
    every norm and cosine comes from K = G Gᵀ (in float64, divided by its
    largest present diagonal entry: the coefficients and targets do not depend
    on the gradients' scale) and the weights are exact. A pair with a zero or
    absent gradient is skipped: no correction, its target unchanged. So is a
    correction toward `|φ̂| = 1` (√(1 − φ̂²) = 0: no finite step reaches it),
    whose target still moves.

    Args:
        gram: `[T, T]` Gram matrix of the task gradients.
        targets: `[T, T]` the EMA targets φ̂ (row i, column j: for g_i' against g_j;
            zeros to start, as in the paper).
        present: `[T]`, 1/0.
        beta: the EMA rate β in [0, 1].
        orders: `[T, T]` int: row i is the order in which task i visits the others
            (a permutation of range(T); i itself is skipped).

    Returns:
        `(coefficients [T], new targets [T, T])`, in the dtypes of `gram` and `targets`.
    """
    num_tasks = gram.shape[0]
    mask = tf.cast(present, tf.float64)
    k = tf.cast(gram, tf.float64) * mask[:, None] * mask[None, :]
    scale = tf.reduce_max(tf.linalg.diag_part(k))
    k = k / tf.where(scale > 0, scale, 1.0)
    norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(k), 0.0))
    old_targets = tf.cast(targets, tf.float64)
    new_targets = old_targets
    orders = tf.cast(orders, tf.int32)
    rows = []
    for i in range(num_tasks):
        row = tf.one_hot(i, num_tasks, dtype=tf.float64)  # g_i' = row · G
        for position in range(num_tasks):
            j = orders[i, position]
            column = tf.gather(k, j, axis=1)
            dot = tf.tensordot(row, column, 1)
            norm_i = tf.sqrt(tf.maximum(tf.tensordot(row, tf.linalg.matvec(k, row), 1), 0.0))
            norm_j = tf.gather(norms, j)
            valid = (j != i) & (norm_i > 0) & (norm_j > 0)
            cosine = tf.clip_by_value(dot / tf.where(valid, norm_i * norm_j, 1.0), -1.0, 1.0)
            target = old_targets[i, j]
            target_sine = tf.sqrt(tf.maximum(1.0 - target**2, 0.0))
            correct = valid & (cosine < target) & (target_sine > 0)
            step = (
                norm_i
                * (target * tf.sqrt(tf.maximum(1.0 - cosine**2, 0.0)) - cosine * target_sine)
                / tf.where(correct, norm_j * target_sine, 1.0)
            )
            row = row + tf.where(correct, step, 0.0) * tf.one_hot(j, num_tasks, dtype=tf.float64)
            updated = tf.where(valid, (1.0 - beta) * target + beta * cosine, target)
            new_targets = tf.tensor_scatter_nd_update(new_targets, tf.stack([i, j])[None], updated[None])
        rows.append(row)
    coefficients = tf.add_n(rows) * mask
    return tf.cast(coefficients, gram.dtype), tf.cast(new_targets, targets.dtype)


def task_orders(num_tasks: int, order=None, seed=None) -> tf.Tensor:
    """`[T, T]` visiting orders, row i for task i: from `order` (`[T]`: one order for every task, or `[T, T]`),
    else drawn: an independent permutation per task (as the paper's "for j ≠ i in random order"),
    from `seed` (a `keras.random.SeedGenerator`, or an int or `[2]` ints: stateless) if given."""
    if order is not None:
        order = tf.cast(tf.convert_to_tensor(order), tf.int32)
        return tf.broadcast_to(order, [num_tasks, num_tasks]) if order.shape.rank == 1 else order
    shape = [num_tasks, num_tasks]
    if isinstance(seed, keras.random.SeedGenerator):
        draws = keras.random.uniform(shape, seed=seed)
    elif seed is None:
        draws = tf.random.uniform(shape)
    else:
        seed = tf.constant([int(seed), 0]) if isinstance(seed, int) else tf.convert_to_tensor(seed)
        draws = tf.random.stateless_uniform(shape, seed, alg="philox")
    return tf.argsort(draws, axis=1, stable=True)


@dataclass
class GradVacConfig:
    """`weighting.gradvac`: the strategy's hyperparameters."""

    gradvac_beta: float = 0.5


@WEIGHTINGS.register("gradvac")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class GradVac(GradientWeighting):
    """Moves each task's gradient toward a learned cosine target with every other task's (Gradient Vaccine).

    The targets φ̂ (T × T, zeros at the start) are a non-trainable weight of
    this layer: they are saved with the model and a resumed run goes on with
    them. With zero targets GradVac is PCGrad. Each task visits the others in
    its own random order, every step.

    Args:
        task_names: the tasks, in order.
        task_weights: base weights w_i (gradients are of w_i·L_i).
        beta: the EMA rate β of the targets, in [0, 1] (LibMTL's default 0.5).
        seed: seeds the task orders.
    """

    config_class = GradVacConfig
    checks = (Bound("gradvac_beta", "an EMA rate in [0, 1]", lambda b: 0.0 <= b <= 1.0, "0.5"),)

    @classmethod
    def from_settings(cls, weighting, context):
        options = weighting.get()
        return cls(context.task_names, context.weights, beta=options.gradvac_beta, seed=context.seed, name="weighting")

    def __init__(
        self, task_names: list[str], task_weights: list[float] | None = None, beta: float = 0.5, seed: int = 0, **kwargs
    ):
        super().__init__(task_names, task_weights, **kwargs)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"GradVac: beta must be in [0, 1], got {beta}")
        self.beta = float(beta)
        self.seed = int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def build(self, input_shape=None):
        super().build(input_shape)
        self.targets = self.add_weight(
            shape=(self.num_tasks, self.num_tasks),
            initializer="zeros",
            trainable=False,
            name="targets",
            aggregation="only_first_replica",
        )

    def shared_gradient(self, task_gradients, task_losses, present):
        orders = task_orders(self.num_tasks, seed=self.seed_generator)
        gram = tf.matmul(task_gradients, task_gradients, transpose_b=True)
        coefficients, targets = gradvac_weights(gram, self.targets.value, present, self.beta, orders)
        self.targets.assign(targets)
        return tf.linalg.matvec(task_gradients, coefficients, transpose_a=True), coefficients

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "seed": self.seed}
