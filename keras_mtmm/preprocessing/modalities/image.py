"""Images: encoded PNG/JPEG/GIF/BMP bytes `tf.string [B]` -> RGB `float32 [B, H, W, 3]` in [0, 1].

An empty string (a missing image) gives the all-zero image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tensorflow as tf

from keras_mtmm.config.bounds import Bound
from keras_mtmm.data.images import check_image_bytes, read_image_bytes
from keras_mtmm.preprocessing.image_decoding import decode_images
from keras_mtmm.preprocessing.modalities.base import ModalityType
from keras_mtmm.registry import MODALITY_TYPES


@dataclass
class ImageModalityConfig:
    """`modalities.<m>.image`: the [height, width] images are resized to."""

    image_size: list[int] = field(default_factory=lambda: [32, 32])


@MODALITY_TYPES.register("image")
class ImageModality(ModalityType):
    name = "image"
    config_class = ImageModalityConfig
    checks = (Bound("image_size", "[height, width] >= 8", lambda size: len(size) == 2 and min(size) >= 8, "[32, 32]"),)
    default_encoder = "cnn"
    single_column = True
    cells = "file"

    def read_file(self, cell, folder, where, max_bytes):
        return read_image_bytes(cell, folder, where, max_bytes)

    def check_bytes(self, content, where, what):
        return check_image_bytes(content, where, what)

    def decodes(self, encoded):
        # The pixels themselves are used (a shape alone can come from a truncated file's header).
        return tf.reduce_max(tf.cast(tf.io.decode_image(encoded, channels=3, expand_animations=False), tf.float32))

    def transform(self, spec, layers, value):
        return decode_images(value, spec["image_size"])

    def present(self, spec, value):
        return tf.strings.length(value) > 0  # the decoder's own test: "" gives the zero image

    def model_input(self, spec):
        return (*spec["image_size"], 3), "float32"

    def raw_input(self, name, spec):
        return tf.TensorSpec([None], tf.string, name=name)
