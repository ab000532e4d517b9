"""GradDrop: gradient sign dropout.

Chen, Ngiam, Huang, Luong, Kretzschmar, Chai, Anguelov, "Just Pick a Sign:
Optimizing Deep Multitask Models with Gradient Sign Dropout", NeurIPS 2020.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from keras_mtmm.config.bounds import Bound
from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.weighting.gradient import GradientWeighting


def graddrop_direction(task_gradients: tf.Tensor, uniform: tf.Tensor, leak, present: tf.Tensor) -> tf.Tensor:
    """GradDrop's combined gradient `Σ_i (ℓ_i + (1 − ℓ_i) M_i) ⊙ g_i`, `[D]`.

    Chen et al. 2020, Eq. 1–3 (and the leak ℓ of their Algorithm 1): per
    coordinate, the positive sign purity `P = ½ (1 + Σ_i g_i / Σ_i |g_i|)`
    (P = ½ where every g_i is 0: nothing to keep there); with U the uniform
    draw of that coordinate, task i keeps its value where
    `M_i = [P > U]·[g_i > 0] + [P < U]·[g_i < 0]` is 1 and drops it otherwise.
    P takes no ε in its denominator (LibMTL adds 1e-7), so the result is
    exactly proportional to the gradients at any scale. Absent tasks (rows
    scaled to 0 by `present`) add nothing to P or to the result.

    Args:
        task_gradients: `[T, D]`.
        uniform: `[D]` draws in (0, 1) (a draw of exactly 0 or 1 would drop a
            coordinate on which all tasks agree).
        leak: scalar or `[T]` in [0, 1]: the fraction of g_i that passes whatever its
            sign (0: the paper's GradDrop; 1: the plain sum).
        present: `[T]`, 1/0.
    """
    dtype = task_gradients.dtype
    g = task_gradients * tf.cast(present, dtype)[:, None]
    total = tf.reduce_sum(g, axis=0)
    magnitude = tf.reduce_sum(tf.abs(g), axis=0)
    purity = 0.5 * (1.0 + total / tf.where(magnitude > 0, magnitude, tf.ones_like(magnitude)))
    uniform = tf.cast(uniform, dtype)[None, :]
    keep = tf.cast((purity > uniform) & (g > 0), dtype) + tf.cast((purity < uniform) & (g < 0), dtype)
    leak = tf.cast(tf.broadcast_to(tf.convert_to_tensor(leak, dtype), [g.shape[0]]), dtype)[:, None]
    return tf.reduce_sum((leak + (1.0 - leak) * keep) * g, axis=0)


def open_uniform(shape, seed, dtype) -> tf.Tensor:
    """Uniform draws in (0, 1): from the smallest positive normal number of `dtype` up to 1 (excluded).

    `seed`: a `keras.random.SeedGenerator`, an int or `[2]` ints (stateless: the
    same draws every call), or None (TensorFlow's global generator).
    """
    dtype = tf.as_dtype(dtype)
    tiny = float(np.finfo(dtype.as_numpy_dtype).tiny)
    if isinstance(seed, keras.random.SeedGenerator):
        return keras.random.uniform(shape, minval=tiny, maxval=1.0, dtype=dtype.name, seed=seed)
    if seed is None:
        return tf.random.uniform(shape, minval=tiny, maxval=1.0, dtype=dtype)
    seed = tf.constant([int(seed), 0]) if isinstance(seed, int) else tf.convert_to_tensor(seed)
    return tf.random.stateless_uniform(shape, seed, minval=tiny, maxval=1.0, dtype=dtype, alg="philox")


@dataclass
class GradDropConfig:
    """`weighting.graddrop`: the strategy's hyperparameters."""

    graddrop_leak: float = 0.0


@WEIGHTINGS.register("graddrop")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class GradDrop(GradientWeighting):
    """Per coordinate of the shared parameters' gradient, keeps one sign at random, weighted by its purity.

    Applied to the per-task gradients of the shared **parameters** (one draw
    U per parameter coordinate and step), the form TorchJD's `GradDrop`
    aggregator uses; the paper applies it to the gradients at the shared
    activations, summed over the batch with a sign correction for the
    activation inputs, before back-propagating into the shared layers
    (LibMTL's `rep_grad`). The result is not a linear combination of the task
    gradients; the recorded weights are the base weights w_i
    (0 for an absent task).

    Args:
        task_names: the tasks, in order.
        task_weights: base weights w_i (gradients are of w_i·L_i).
        leak: in [0, 1], the fraction of each task's gradient kept whatever its sign.
        seed: seeds the uniform draws.
    """

    config_class = GradDropConfig
    checks = (Bound("graddrop_leak", "a fraction in [0, 1]", lambda f: 0.0 <= f <= 1.0, "0.0"),)

    @classmethod
    def from_settings(cls, weighting, context):
        options = weighting.get()
        return cls(context.task_names, context.weights, leak=options.graddrop_leak, seed=context.seed, name="weighting")

    def __init__(
        self, task_names: list[str], task_weights: list[float] | None = None, leak: float = 0.0, seed: int = 0, **kwargs
    ):
        super().__init__(task_names, task_weights, **kwargs)
        if not 0.0 <= leak <= 1.0:
            raise ValueError(f"GradDrop: leak must be in [0, 1], got {leak}")
        self.leak = float(leak)
        self.seed = int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def shared_gradient(self, task_gradients, task_losses, present):
        uniform = open_uniform([task_gradients.shape[1]], self.seed_generator, task_gradients.dtype)
        direction = graddrop_direction(task_gradients, uniform, self.leak, present)
        return direction, tf.cast(present, task_gradients.dtype)

    def get_config(self):
        return {**super().get_config(), "leak": self.leak, "seed": self.seed}
