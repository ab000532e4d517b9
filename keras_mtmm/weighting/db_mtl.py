"""DB-MTL: dual balancing, of the loss scales (log losses) and of the gradient magnitudes (max norm).

Lin, Jiang, Ye, Zhang, Chen, Chen, Liu, Kwok, "Dual-Balancing for Multi-Task
Learning", arXiv:2308.12029 (2023; Neural Networks, 2025).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from keras_mtmm.config.bounds import Bound
from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.weighting.gradient import GradientWeighting, flat_jacobian, unflatten, weighted_gradient
from keras_mtmm.weighting.replicas import replica_mean

LOG_EPSILON = 1e-8  # log(L_i + ε), as LibMTL's DB_MTL


def db_mtl_update(task_gradients: tf.Tensor, ema: tf.Tensor, step, beta: float, beta_sigma: float, present):
    """DB-MTL's gradient step from the log-loss gradients: `(direction [D], α [T], new EMA [T, D])`.

    Lin et al. 2023, Section 3 and Algorithm 1, with the conventions of the
    authors' LibMTL `DB_MTL`: with `β_t = β / t^σ` (t = `step`, from 1),

        ĝ_i ← β_t ĝ_i + (1 − β_t) g_i        (ĝ starts at 0, no bias correction)
        α_i = max_j ‖ĝ_j‖ / ‖ĝ_i‖
        d   = Σ_i α_i ĝ_i                    (every term has the largest norm)

    where g_i is the gradient of `log(L_i + ε)` (the loss-scale balancing:
    `∇ log L_i = ∇L_i / L_i`). α takes no ε (LibMTL divides by ‖ĝ_i‖ + 1e-8),
    so d is exactly proportional to the gradients at any scale. An absent task
    keeps its ĝ_i and gets α_i = 0, as does a task whose ĝ_i is 0.

    Args:
        task_gradients: `[T, D]` gradients of the log-losses.
        ema: `[T, D]` ĝ from the previous step (zeros at the first).
        step: t, the number of this step (1 for the first).
        beta: β in [0, 1) (LibMTL's default 0.9; 0: no EMA, ĝ = g).
        beta_sigma: σ >= 0, the decay of β over steps (LibMTL's default 0: constant β).
        present: `[T]`, 1/0.
    """
    dtype = task_gradients.dtype
    mask = tf.cast(present, dtype)[:, None]
    rate = beta / tf.pow(tf.cast(step, tf.float64), beta_sigma)
    rate = tf.cast(rate, dtype)
    ema = tf.cast(ema, dtype)
    new_ema = mask * (rate * ema + (1.0 - rate) * task_gradients) + (1.0 - mask) * ema
    norms = tf.cast(tf.norm(new_ema, axis=1), tf.float64) * tf.cast(present, tf.float64)
    largest = tf.reduce_max(norms)
    alpha = tf.cast(tf.where(norms > 0, largest / tf.where(norms > 0, norms, 1.0), 0.0), dtype)
    return tf.linalg.matvec(new_ema, alpha, transpose_a=True), alpha, new_ema


@dataclass
class DBMTLConfig:
    """`weighting.db_mtl`: the strategy's hyperparameters."""

    db_mtl_beta: float = 0.9
    db_mtl_beta_sigma: float = 0.0


@WEIGHTINGS.register("db_mtl")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class DBMTL(GradientWeighting):
    """Trains on the log losses, each task's EMA gradient scaled up to the largest one's norm.

    The shared parameters move along `Σ_i α_i ĝ_i` (`db_mtl_update`); the
    task-specific ones (heads, towers) along the plain gradient of
    `Σ_i log(L_i + ε)`, as in LibMTL. The base weights w_i do not change
    training (the log transform and the norm balancing both cancel a constant
    factor); they weigh the reported evaluation loss. The recorded weight of a
    task is `α_i / (L_i + ε)`, the factor its loss gradient gets (the EMA's
    memory aside).

    The EMA ĝ is a non-trainable weight of this layer, `[T, num_parameters]`,
    saved with the model; its first P columns hold the shared parameters'
    EMA (P, the shared parameter count, is known only when the first step is
    traced, so the state is sized by the network's trainable parameter count,
    which bounds it). The step count t is a weight too.

    Args:
        task_names: the tasks, in order.
        num_parameters: the columns of the EMA state: at least the number of shared
            parameters (`build_weighting` passes the network's trainable parameter count).
        task_weights: base weights w_i (the evaluation loss only).
        beta: the EMA rate β in [0, 1).
        beta_sigma: σ >= 0 of `β_t = β / t^σ`.
    """

    config_class = DBMTLConfig
    checks = (
        Bound("db_mtl_beta", "an EMA rate in [0, 1)", lambda b: 0.0 <= b < 1.0, "0.9"),
        Bound("db_mtl_beta_sigma", ">= 0", lambda s: s >= 0, "0 (constant β)"),
    )

    @classmethod
    def from_settings(cls, weighting, context):
        options = weighting.get()
        return cls(
            context.task_names,
            context.num_parameters,
            context.weights,
            beta=options.db_mtl_beta,
            beta_sigma=options.db_mtl_beta_sigma,
            name="weighting",
        )

    def __init__(
        self,
        task_names: list[str],
        num_parameters: int,
        task_weights: list[float] | None = None,
        beta: float = 0.9,
        beta_sigma: float = 0.0,
        **kwargs,
    ):
        super().__init__(task_names, task_weights, **kwargs)
        if int(num_parameters) < 1:
            raise ValueError(f"DBMTL: num_parameters must be >= 1, got {num_parameters}")
        if not 0.0 <= beta < 1.0 or beta_sigma < 0:
            raise ValueError(f"DBMTL: beta in [0, 1) and beta_sigma >= 0 expected, got {beta}, {beta_sigma}")
        self.num_parameters = int(num_parameters)
        self.beta = float(beta)
        self.beta_sigma = float(beta_sigma)

    def build(self, input_shape=None):
        super().build(input_shape)
        self.ema = self.add_weight(
            shape=(self.num_tasks, self.num_parameters),
            initializer="zeros",
            trainable=False,
            name="ema",
            aggregation="only_first_replica",
        )
        self.steps = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="steps", aggregation="only_first_replica"
        )

    def gradients(self, tape, task_losses, present, shared_variables, specific_variables, representation=None):
        # d log(L_i + ε) = dL_i / (L_i + ε): the log-loss Jacobian is the loss Jacobian with scaled rows.
        log_scale = tf.stop_gradient(present / (task_losses + LOG_EPSILON))
        task_gradients = replica_mean(flat_jacobian(tape, task_losses, shared_variables)) * log_scale[:, None]
        self.record_cosines(task_gradients)
        size = task_gradients.shape[1]
        if size > self.num_parameters:
            raise ValueError(f"DBMTL: {size} shared parameters, but the EMA state has {self.num_parameters} columns")
        state = tf.cast(self.ema.value, task_gradients.dtype)
        step = self.steps.value + 1.0
        direction, alpha, ema = db_mtl_update(
            task_gradients, state[:, :size], step, self.beta, self.beta_sigma, present
        )
        self.ema.assign(tf.cast(tf.concat([ema, state[:, size:]], axis=1), self.ema.dtype))
        self.steps.assign(step)
        specific = weighted_gradient(tape, task_losses, specific_variables, log_scale)
        return unflatten(direction, shared_variables), specific, alpha * log_scale

    def get_config(self):
        return {
            **super().get_config(),
            "num_parameters": self.num_parameters,
            "beta": self.beta,
            "beta_sigma": self.beta_sigma,
        }
