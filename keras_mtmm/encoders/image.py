"""Image encoders: the shared convolutional base (Conv -> ReLU -> MaxPool stack)."""

from __future__ import annotations

import keras

from keras_mtmm.registries import ENCODERS


@ENCODERS.register("cnn")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class ConvImageEncoder(keras.layers.Layer):
    """Conv2D -> ReLU -> MaxPool blocks, global average pooling, then Dense(units).

    The seed's shared convolutional base, with configurable depth (one block
    per entry of `filters`).

    Args:
        filters: the number of filters of each conv block, in order.
        kernel_size: the square kernel size of every conv layer.
        units: the width of the output feature vector.
        dropout: dropout rate before the output projection.
        return_sequence: return the last feature map as a sequence of
            patches, `[B, h·w, units]` (each position projected), instead of
            the pooled vector (for cross-attention fusion).

    Example:
        >>> encoder = ConvImageEncoder(filters=[16, 32], kernel_size=3, units=64)
        >>> encoder(keras.ops.zeros((2, 32, 32, 3))).shape
        (2, 64)
    """

    modality_types = ("image",)

    def __init__(
        self,
        filters: list[int],
        kernel_size: int = 3,
        units: int = 64,
        dropout: float = 0.0,
        return_sequence: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        filters = [int(f) for f in filters]
        if not filters or any(f < 1 for f in filters):
            raise ValueError(f"ConvImageEncoder: filters must be a non-empty list of positive ints, got {filters}")
        if kernel_size < 1 or units < 1:
            raise ValueError(f"ConvImageEncoder: kernel_size and units must be positive, got {kernel_size}, {units}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.units = units
        self.dropout = dropout
        self.return_sequence = bool(return_sequence)
        self.convs = [
            keras.layers.Conv2D(f, kernel_size, padding="same", activation="relu", name=f"conv_{i}")
            for i, f in enumerate(filters)
        ]
        self.pools = [keras.layers.MaxPooling2D(2, name=f"pool_{i}") for i in range(len(filters))]
        self.global_pool = keras.layers.GlobalAveragePooling2D()
        self.dropout_layer = keras.layers.Dropout(dropout)
        self.projection = keras.layers.Dense(units, activation="relu", name="projection")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv, pool in zip(self.convs, self.pools):
            conv.build(shape)
            shape = pool.compute_output_shape(conv.compute_output_shape(shape))
        self.projection.build((shape[0], shape[-1]))

    def call(self, images, training=None):
        x = images
        for conv, pool in zip(self.convs, self.pools):
            x = pool(conv(x))
        if self.return_sequence:
            height, width, channels = x.shape[1], x.shape[2], x.shape[3]
            x = keras.ops.reshape(x, (-1, height * width, channels))
        else:
            x = self.global_pool(x)
        return self.projection(self.dropout_layer(x, training=training))

    def compute_output_shape(self, input_shape):
        if not self.return_sequence:
            return (input_shape[0], self.units)
        shape = tuple(input_shape)
        for conv, pool in zip(self.convs, self.pools):
            shape = pool.compute_output_shape(conv.compute_output_shape(shape))
        return (input_shape[0], shape[1] * shape[2], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "units": self.units,
            "dropout": self.dropout,
            "return_sequence": self.return_sequence,
        }
