"""FAMO: fast adaptive multitask optimization, loss weights learned from how the log losses fall.

Liu, Feng, Stone, Liu, "FAMO: Fast Adaptive Multitask Optimization",
NeurIPS 2023. O(1) in the number of tasks: no per-task gradient, one
backward pass per step (loss-only, through the model's `compute_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from keras_mtmm.config.bounds import Bound, Choice
from keras_mtmm.config.choices import FAMO_UPDATES
from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.weighting.base import WeightingStrategy

EPSILON = 1e-8  # log(L_i − L_i* + ε), as the official code


def famo_weights(logits, losses, present, min_losses=0.0):
    """FAMO's loss weights `w_i = c·z_i / (L_i − L_i* + ε)`, `z = softmax(ξ)`, `c = (Σ_j z_j / (L_j − L_j* + ε))⁻¹`.

    Liu et al. 2023, Algorithm 1 (line 5): training on `Σ_i w_i L_i` with w
    held constant has the gradient of the paper's `c Σ_i z_i log(L_i − L_i* + ε)`
    (the official code's `get_weighted_loss`): a convex combination of the task
    gradients, each divided by its loss. Over the present tasks only (the
    absent get 0, c is renormalised).

    Args:
        logits: `[T]` ξ.
        losses: `[T]` the task losses L_i (no gradient flows through the weights).
        present: `[T]`, 1/0.
        min_losses: `[T]` or scalar L_i*, the losses' lower bounds (0, as the paper's experiments).
    """
    losses = tf.stop_gradient(tf.convert_to_tensor(losses))
    dtype = losses.dtype
    ratios = tf.nn.softmax(tf.cast(logits, dtype)) / (losses - tf.cast(min_losses, dtype) + EPSILON)
    ratios = ratios * tf.cast(present, dtype)
    total = tf.reduce_sum(ratios)
    return ratios / tf.where(total > 0, total, tf.ones_like(total))


def famo_logit_gradient(logits, losses_before, losses_after, present, min_losses=0.0):
    """The gradient of FAMO's logit update, `(∂z/∂ξ)ᵀ δ = z ⊙ (δ − zᵀδ)`, `[T]`.

    Algorithm 1 (lines 6–7): `δ_i = log(L_i(θ_t) − L_i* + ε) − log(L_i(θ_{t+1}) − L_i* + ε)`,
    the fall of each log loss over the step (as the official `update`; δ_i = 0
    for a task absent before or after).
    """
    dtype = tf.convert_to_tensor(losses_before).dtype
    shift = tf.cast(min_losses, dtype) - EPSILON
    delta = (tf.math.log(losses_before - shift) - tf.math.log(losses_after - shift)) * tf.cast(present, dtype)
    z = tf.nn.softmax(tf.cast(logits, dtype))
    return z * (delta - tf.reduce_sum(z * delta))


def adam_step(logits, gradient, first_moment, second_moment, step, learning_rate: float, gamma: float):
    """One step of the logits' optimizer: Adam with L2 weight decay γ, `(ξ, m, v)` after step t (from 1).

    The paper's Appendix C (Algorithm 2), the official code and LibMTL update ξ
    with PyTorch's `Adam(lr=α, weight_decay=γ)`, defaults β₁ = 0.9, β₂ = 0.999,
    ε = 1e-8: `g = ∇ + γξ`, `m ← β₁m + (1 − β₁)g`, `v ← β₂v + (1 − β₂)g²`,
    `ξ ← ξ − α m̂ / (√v̂ + ε)` with the bias-corrected m̂, v̂ (Algorithm 1's plain
    `ξ ← ξ − α(∇ + γξ)` is the same direction without Adam's scaling).
    """
    gradient = gradient + gamma * logits
    first_moment = 0.9 * first_moment + 0.1 * gradient
    second_moment = 0.999 * second_moment + 0.001 * gradient**2
    step = tf.cast(step, logits.dtype)
    corrected_first = first_moment / (1.0 - 0.9**step)
    corrected_second = second_moment / (1.0 - 0.999**step)
    logits = logits - learning_rate * corrected_first / (tf.sqrt(corrected_second) + 1e-8)
    return logits, first_moment, second_moment


@dataclass
class FAMOConfig:
    """`weighting.famo`: the strategy's hyperparameters."""

    famo_learning_rate: float = 0.025
    famo_gamma: float = 1e-3
    famo_update: str = "same_batch"


@WEIGHTINGS.register("famo")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class FAMO(WeightingStrategy):
    """Weighs each task by `c·softmax(ξ)_i / L_i`; after each step, ξ moves toward the tasks whose log loss fell least.

    When ξ learns, `update`:

    - `same_batch` (the paper's and the official code's): after the
      optimizer step, the model runs forward once more on the same batch
      (training mode, no gradient) and δ compares the batch's losses before
      and after the step. Costs one extra forward pass per step.
    - `next_batch`: δ compares this step's losses with the next batch's,
      computed anyway: no extra pass, but δ then also holds the difference
      between the two batches, a noise of mean zero.

    ξ, Adam's moments and step count, and the last losses are non-trainable
    weights of this layer (saved with the model). Training ignores the base
    weights (FAMO's loss is invariant to scaling a task's loss: log(w·L) =
    log w + log L); they weigh the reported evaluation loss. The recorded
    weights are the w_i trained with, summing to 1.

    Args:
        task_names: the tasks, in order.
        task_weights: base weights w_i (the evaluation loss only).
        learning_rate: α of the logits' Adam (the paper's 0.025).
        gamma: γ, the logits' weight decay (1e-3, as the paper's Algorithm 2 and LibMTL).
        update: `same_batch` or `next_batch`.
    """

    config_class = FAMOConfig
    checks = (
        Bound("famo_learning_rate", "> 0", lambda r: r > 0, "0.025"),
        Bound("famo_gamma", ">= 0", lambda g: g >= 0, "0.001"),
        Choice("famo_update", FAMO_UPDATES),
    )

    @classmethod
    def from_settings(cls, weighting, context):
        options = weighting.get()
        return cls(
            context.task_names,
            context.weights,
            learning_rate=options.famo_learning_rate,
            gamma=options.famo_gamma,
            update=options.famo_update,
            name="weighting",
        )

    def __init__(
        self,
        task_names: list[str],
        task_weights: list[float] | None = None,
        learning_rate: float = 0.025,
        gamma: float = 1e-3,
        update: str = "same_batch",
        **kwargs,
    ):
        super().__init__(task_names, **kwargs)
        task_weights = [1.0] * self.num_tasks if task_weights is None else [float(w) for w in task_weights]
        if len(task_weights) != self.num_tasks:
            raise ValueError(f"FAMO: expected {self.num_tasks} task_weights, got {task_weights}")
        if learning_rate <= 0 or gamma < 0:
            raise ValueError(f"FAMO: learning_rate > 0 and gamma >= 0 expected, got {learning_rate}, {gamma}")
        if update not in FAMO_UPDATES:
            raise ValueError(f"FAMO: update must be one of {', '.join(FAMO_UPDATES)}, got {update!r}")
        self.task_weights_list = task_weights
        self.learning_rate = float(learning_rate)
        self.gamma = float(gamma)
        self.update = update

    @property
    def updates_after_step(self) -> bool:
        """Whether the model must call `after_step` with the batch's losses after each optimizer step."""
        return self.update == "same_batch"

    def build(self, input_shape=None):
        super().build(input_shape)

        def state(name, shape=None):
            shape = (self.num_tasks,) if shape is None else shape
            return self.add_weight(
                shape=shape, initializer="zeros", trainable=False, name=name, aggregation="only_first_replica"
            )

        self.logits = state("logits")
        self.first_moment = state("first_moment")
        self.second_moment = state("second_moment")
        self.logit_steps = state("logit_steps", ())
        self.previous_losses = state("previous_losses")
        self.previous_present = state("previous_present")

    def task_weights(self, task_losses, present, training):
        if not training:
            return keras.ops.convert_to_tensor(self.task_weights_list, dtype=task_losses.dtype)
        return famo_weights(self.logits.value, task_losses, present)

    def call(self, task_losses, present, training=False):
        if training and self.update == "next_batch":
            self.learn(task_losses, present)
        weights = self.task_weights(task_losses, present, training)
        if training:
            self.previous_losses.assign(tf.cast(tf.stop_gradient(task_losses), self.previous_losses.dtype))
            self.previous_present.assign(tf.cast(present, self.previous_present.dtype))
            self.record(weights)
        return keras.ops.sum(weights * task_losses * present)

    def after_step(self, task_losses, present) -> None:
        """`same_batch`: learn ξ from the losses of the step's batch, recomputed after the optimizer step."""
        self.learn(task_losses, present)

    def learn(self, losses_after, present) -> None:
        """One Adam step of ξ from the previous losses to `losses_after` (none where no task was in both)."""
        dtype = self.logits.dtype
        both = tf.cast(present, dtype) * self.previous_present.value
        gradient = famo_logit_gradient(
            self.logits.value, self.previous_losses.value, tf.cast(tf.stop_gradient(losses_after), dtype), both
        )
        step = self.logit_steps.value + 1.0
        logits, first, second = adam_step(
            self.logits.value,
            gradient,
            self.first_moment.value,
            self.second_moment.value,
            step,
            self.learning_rate,
            self.gamma,
        )
        learned = tf.reduce_any(both > 0)
        self.logits.assign(tf.where(learned, logits, self.logits.value))
        self.first_moment.assign(tf.where(learned, first, self.first_moment.value))
        self.second_moment.assign(tf.where(learned, second, self.second_moment.value))
        self.logit_steps.assign(tf.where(learned, step, self.logit_steps.value))

    def get_config(self):
        return {
            **super().get_config(),
            "task_weights": self.task_weights_list,
            "learning_rate": self.learning_rate,
            "gamma": self.gamma,
            "update": self.update,
        }
