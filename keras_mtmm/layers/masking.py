"""Token masking for a masked language model: which tokens of a text to hide behind `[mask]`."""

from __future__ import annotations

import keras
import tensorflow as tf


def hash_uniform(token_ids: tf.Tensor) -> tf.Tensor:
    """A number in [0, 1) per position `[B, L]`: a hash of the row's ids and the position, the same on any device."""
    ids = tf.cast(token_ids, tf.int64)
    positions = tf.range(tf.shape(ids)[1], dtype=tf.int64)[None, :]
    x = ids * 1103515245 + positions * 12345 + tf.reduce_sum(ids, axis=1, keepdims=True) * 2654435
    modulus = tf.constant(2**31, tf.int64)
    for _ in range(3):  # linear congruential steps mix the bits (the high ones, which the division keeps)
        x = tf.math.floormod(tf.math.floormod(x, modulus) * 1103515245 + 12345, modulus)
    return tf.cast(x, tf.float32) / float(2**31)


@keras.saving.register_keras_serializable(package="keras_mtmm")
class TokenMasking(keras.layers.Layer):
    """Token ids `[B, L]` -> (the ids with the chosen tokens replaced by `mask_id`, the chosen positions 0/1).

    A token (id > 0) is chosen with probability `rate`: at random in training (a new draw each step),
    by `hash_uniform` otherwise (the same positions for the same text); a token that is `mask_id`
    already (a word written `[mask]`) is always chosen.

    Args:
        rate: the fraction of tokens to hide, in (0, 1).
        mask_id: the `[mask]` token's id.
        seed: the training draws' seed.
    """

    def __init__(self, rate: float, mask_id: int, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < rate < 1.0:
            raise ValueError(f"TokenMasking: rate must be in (0, 1), got {rate}")
        self.rate, self.mask_id, self.seed = float(rate), int(mask_id), int(seed)
        self.generator = keras.random.SeedGenerator(self.seed)

    def call(self, token_ids, training=None):
        if training:
            draw = keras.random.uniform(keras.ops.shape(token_ids), seed=self.generator)
        else:
            draw = hash_uniform(token_ids)
        present = token_ids > 0
        chosen = keras.ops.logical_and(present, keras.ops.logical_or(draw < self.rate, token_ids == self.mask_id))
        masked = keras.ops.where(chosen, keras.ops.cast(self.mask_id, token_ids.dtype), token_ids)
        return masked, keras.ops.cast(chosen, "float32")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape), tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "mask_id": self.mask_id, "seed": self.seed}
