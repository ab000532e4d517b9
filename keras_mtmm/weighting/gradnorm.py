"""GradNorm: balance task gradient norms on the last shared layer.

Chen, Badrinarayanan, Lee, Rabinovich, "GradNorm: Gradient Normalization for
Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from keras_mtmm.config.bounds import Bound
from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.weighting.gradient import GradientWeighting, backend_variables, weighted_gradient
from keras_mtmm.weighting.replicas import replica_mean


def gradnorm_weight_gradient(weights, gradient_norms, losses, initial_losses, present, alpha: float):
    """d/dw of GradNorm's `Σ_i |G_i − Ḡ·r_i^α|`, with `G_i = w_i·‖∇_W L_i‖` and the target held constant.

    `r_i = (L_i/L_i(0)) / mean_j(L_j/L_j(0))` over present tasks.
    """
    count = tf.maximum(tf.reduce_sum(present), 1.0)
    scaled = weights * gradient_norms
    mean_norm = tf.reduce_sum(scaled * present) / count
    ratios = tf.math.divide_no_nan(losses, initial_losses)
    inverse_rate = tf.math.divide_no_nan(ratios, tf.reduce_sum(ratios * present) / count)
    target = tf.stop_gradient(mean_norm * tf.pow(inverse_rate, alpha))
    return tf.sign(scaled - target) * gradient_norms * present


def renormalize(weights, num_tasks: int):
    """Keep weights positive and summing to T."""
    weights = tf.maximum(weights, 1e-4)
    return weights * num_tasks / tf.reduce_sum(weights)


@dataclass
class GradNormConfig:
    """`weighting.gradnorm`: the strategy's hyperparameters."""

    alpha: float = 1.5
    gradnorm_learning_rate: float = 0.025


@WEIGHTINGS.register("gradnorm")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class GradNorm(GradientWeighting):
    """Learns w_i so every task's gradient norm on the last shared layer tracks its relative training rate.

    The weights are updated by their own rule (SGD with `learning_rate` on
    GradNorm's loss, then renormalised to sum to T), not by the model's
    optimizer; the model trains on `Σ_i w_i L_i`.

    Args:
        task_names: the tasks, in order.
        task_weights: the initial weights (renormalised to sum to T).
        alpha: the restoring-force strength α (the paper uses 0.12–1.5).
        learning_rate: the step size of the weight updates.
    """

    config_class = GradNormConfig
    checks = (
        Bound("alpha", ">= 0", lambda a: a >= 0, "1.5"),
        Bound("gradnorm_learning_rate", "> 0", lambda r: r > 0, "0.025"),
    )

    @classmethod
    def from_settings(cls, weighting, context):
        options = weighting.get()
        return cls(
            context.task_names,
            context.weights,
            alpha=options.alpha,
            learning_rate=options.gradnorm_learning_rate,
            name="weighting",
        )

    def __init__(
        self,
        task_names: list[str],
        task_weights: list[float] | None = None,
        alpha: float = 1.5,
        learning_rate: float = 0.025,
        **kwargs,
    ):
        super().__init__(task_names, task_weights, **kwargs)
        if alpha < 0 or learning_rate <= 0:
            raise ValueError(f"GradNorm: alpha >= 0 and learning_rate > 0 expected, got {alpha}, {learning_rate}")
        self.alpha = float(alpha)
        self.learning_rate = float(learning_rate)

    def build(self, input_shape=None):
        super().build(input_shape)
        total = sum(self.task_weights_list) or 1.0
        initial = [w * self.num_tasks / total for w in self.task_weights_list]
        self.learned_weights = self.add_weight(
            shape=(self.num_tasks,),
            initializer=keras.initializers.Constant(initial),
            trainable=False,
            name="learned",
            aggregation="only_first_replica",
        )
        self.initial_losses = self.add_weight(
            shape=(self.num_tasks,),
            initializer="zeros",
            trainable=False,
            name="initial_losses",
            aggregation="only_first_replica",
        )

    def task_weights(self, task_losses, present, training):
        return keras.ops.cast(self.learned_weights, task_losses.dtype)

    def gradients(self, tape, task_losses, present, shared_variables, specific_variables, representation=None):
        weights = tf.cast(self.learned_weights, task_losses.dtype)
        last_shared = [v for v in shared_variables if len(v.shape) >= 2][-1:] or list(shared_variables[-1:])
        jacobian = tape.jacobian(
            task_losses,
            backend_variables(last_shared),
            experimental_use_pfor=True,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        jacobian = [replica_mean(j) for j in jacobian]  # the global batch's, under tf.distribute
        self.record_cosines(tf.concat([tf.reshape(j, [self.num_tasks, -1]) for j in jacobian], axis=1))
        squares = [tf.reduce_sum(tf.reshape(j, [self.num_tasks, -1]) ** 2, axis=1) for j in jacobian]
        norms = tf.sqrt(tf.add_n(squares)) * present
        losses = tf.stop_gradient(task_losses)
        first_seen = tf.logical_and(tf.equal(self.initial_losses, 0.0), present > 0)
        self.initial_losses.assign(tf.where(first_seen, losses, self.initial_losses))
        step = gradnorm_weight_gradient(weights, norms, losses, self.initial_losses, present, self.alpha)
        self.learned_weights.assign(renormalize(weights - self.learning_rate * step, self.num_tasks))
        variables = list(shared_variables) + list(specific_variables)
        grads = weighted_gradient(tape, task_losses, variables, weights * present)
        return grads[: len(shared_variables)], grads[len(shared_variables) :], weights

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "learning_rate": self.learning_rate}
