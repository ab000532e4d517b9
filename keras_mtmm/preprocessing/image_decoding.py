"""Encoded image bytes -> model-ready pixels, in TensorFlow (training's input pipeline and the served graph)."""

from __future__ import annotations

import tensorflow as tf


def decode_images(images: tf.Tensor, image_size: list[int]) -> tf.Tensor:
    """Encoded image bytes [B] -> float32 [B, H, W, 3] in [0, 1]; "" gives zeros."""
    height, width = int(image_size[0]), int(image_size[1])

    def decode_one(encoded):
        def decode():
            image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
            image = tf.image.convert_image_dtype(image, tf.float32)
            return tf.image.resize(image, [height, width])

        image = tf.cond(tf.strings.length(encoded) > 0, decode, lambda: tf.zeros([height, width, 3], tf.float32))
        image.set_shape([height, width, 3])
        return image

    return tf.map_fn(decode_one, images, fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32))
