"""Image encoders: the shared convolutional base (Conv -> GroupNorm -> ReLU -> MaxPool stack)."""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from keras_mtmm.config.bounds import Choice, Widths, positive
from keras_mtmm.config.choices import POOLINGS
from keras_mtmm.config.one_of import exclusive
from keras_mtmm.errors import ConfigError
from keras_mtmm.layers.encoders.layers import EncoderProjection
from keras_mtmm.registry import ENCODERS


def group_count(filters: int, most: int = 8) -> int:
    """The most groups (at most `most`) that divide `filters` evenly."""
    return max(g for g in range(1, min(most, filters) + 1) if filters % g == 0)


@dataclass
class ConvImageEncoderConfig:
    """`encoder.cnn`: the conv blocks' filters and kernel, and the head (`pooling`, `grid`: this type's only)."""

    filters: list[int] = field(default_factory=lambda: [16, 32])
    kernel_size: int = 3
    pooling: str = exclusive("grid")
    grid: list[int] = exclusive([4, 4])


@ENCODERS.register("cnn")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class ConvImageEncoder(keras.layers.Layer):
    """Conv2D -> GroupNorm -> ReLU -> MaxPool blocks, a position-keeping head, then a linear projection.

    The seed's shared convolutional base, with configurable depth (one block
    per entry of `filters`), built to train reliably with ordinary learning
    rates:

    - convolutions are He-initialized (suited to the ReLU after them) and
      normalized per example (`GroupNormalization`: batch-independent, so
      training under tf.distribute equals one device, and serving equals
      training);
    - the output is an `EncoderProjection`: a *linear* `Dense(units)` and a
      `LayerNormalization`, so no output unit can die (the old `Dense(relu)`
      head left 7 of 64 units alive in a failed seed).

    `pooling` decides what the head keeps of *where* things are:

    - `grid` (default): average-pool the last feature map to a `grid` of
      cells (default 4×4; never finer than the map), flatten, project. The
      projection sees which cell holds what: "the circle is on the left" is
      linear in these features.
    - `flatten`: project the whole last feature map (most parameters).
    - `average`: global average pooling: position-invariant, fewest
      parameters (the previous default; it cannot tell left from right).

    Args:
        filters: the number of filters of each conv block, in order.
        kernel_size: the square kernel size of every conv layer.
        units: the width of the output feature vector.
        dropout: dropout rate before the output projection.
        pooling: `grid`, `flatten` or `average` (see above).
        grid: `[rows, columns]` of the `grid` pooling.
        return_sequence: return the last feature map as a sequence of
            patches, `[B, h·w, units]` (each position projected), instead of
            the pooled vector (for cross-attention fusion).

    Example:
        >>> encoder = ConvImageEncoder(filters=[16, 32], kernel_size=3, units=64)
        >>> encoder(keras.ops.zeros((2, 32, 32, 3))).shape
        (2, 64)
    """

    modality_types = ("image", "audio")

    config_class = ConvImageEncoderConfig
    checks = (Widths("filters"), positive("kernel_size", "3"), Choice("pooling", POOLINGS))

    @classmethod
    def check_config(cls, options, encoder, context, where: str) -> None:
        """A grid of positive cells, and an input big enough for the conv blocks (each halves it)."""
        if len(options.grid) != 2 or min(options.grid) < 1:
            raise ConfigError(f"{where}.grid", f"expected [rows, columns] >= 1, got {options.grid}", "e.g. [4, 4]")
        blocks = len(options.filters)
        size = list(context.modality.input_shape()[:2])
        if blocks == 0 or min(size) < 2**blocks:
            what = f"image_size {size}" if context.modality.type == "image" else f"its {size} input"
            raise ConfigError(
                f"{where}.filters",
                f"{blocks} conv blocks each halve the input; {what} is too small for them",
                f"use at least one block and image_size >= {2 ** max(blocks, 1)}, or fewer filters",
            )

    @classmethod
    def from_settings(cls, encoder, vocabulary_sizes: list[int], return_sequence: bool, name: str):
        """The layer a modality's `encoder` block describes. (Keras' `from_config` is deserialization.)"""
        return cls(
            filters=encoder.get().filters,
            kernel_size=encoder.get().kernel_size,
            units=encoder.units,
            dropout=encoder.dropout,
            pooling=encoder.get().pooling,
            grid=encoder.get().grid,
            return_sequence=return_sequence,
            name=name,
        )

    def __init__(
        self,
        filters: list[int],
        kernel_size: int = 3,
        units: int = 64,
        dropout: float = 0.0,
        pooling: str = "grid",
        grid: list[int] = (4, 4),
        return_sequence: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        filters = [int(f) for f in filters]
        if not filters or any(f < 1 for f in filters):
            raise ValueError(f"ConvImageEncoder: filters must be a non-empty list of positive ints, got {filters}")
        if kernel_size < 1 or units < 1:
            raise ValueError(f"ConvImageEncoder: kernel_size and units must be positive, got {kernel_size}, {units}")
        if pooling not in POOLINGS:
            raise ValueError(f"ConvImageEncoder: pooling must be one of {POOLINGS}, got {pooling!r}")
        grid = [int(g) for g in grid]
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f"ConvImageEncoder: grid must be [rows, columns] >= 1, got {grid}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.units = units
        self.dropout = dropout
        self.pooling = pooling
        self.grid = grid
        self.return_sequence = bool(return_sequence)
        self.convs = [
            keras.layers.Conv2D(
                f, kernel_size, padding="same", use_bias=False, kernel_initializer="he_normal", name=f"conv_{i}"
            )
            for i, f in enumerate(filters)
        ]
        self.norms = [keras.layers.GroupNormalization(group_count(f), name=f"norm_{i}") for i, f in enumerate(filters)]
        self.pools = [keras.layers.MaxPooling2D(2, name=f"pool_{i}") for i in range(len(filters))]
        self.dropout_layer = keras.layers.Dropout(dropout)
        self.projection = EncoderProjection(units, name="projection")
        self.head_pool = None  # built with the feature map's size

    def _feature_shape(self, input_shape):
        shape = tuple(input_shape)
        for conv, pool in zip(self.convs, self.pools):
            shape = pool.compute_output_shape(conv.compute_output_shape(shape))
        return shape

    def _cells(self, feature_shape) -> tuple[int, int]:
        """The grid actually pooled to: the configured one, never finer than the feature map."""
        return min(self.grid[0], feature_shape[1]), min(self.grid[1], feature_shape[2])

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv, norm, pool in zip(self.convs, self.norms, self.pools):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            norm.build(shape)
            shape = pool.compute_output_shape(shape)
        channels = shape[-1]
        if self.return_sequence or self.pooling == "average":
            width = channels
        elif self.pooling == "flatten":
            width = shape[1] * shape[2] * channels
        else:
            cells = self._cells(shape)
            self.head_pool = keras.layers.AdaptiveAveragePooling2D(cells, name="grid_pool")
            width = cells[0] * cells[1] * channels
        self.projection.build((shape[0], width))

    def call(self, images, training=None):
        x = images
        for conv, norm, pool in zip(self.convs, self.norms, self.pools):
            x = pool(keras.ops.relu(norm(conv(x))))
        height, width, channels = x.shape[1], x.shape[2], x.shape[3]
        if self.return_sequence:
            patches = keras.ops.reshape(x, (-1, height * width, channels))
            return self.projection(self.dropout_layer(patches, training=training))
        if self.pooling == "average":
            x = keras.ops.mean(x, axis=(1, 2))
        elif self.pooling == "flatten":
            x = keras.ops.reshape(x, (-1, height * width * channels))
        else:
            x = self.head_pool(x)
            x = keras.ops.reshape(x, (-1, x.shape[1] * x.shape[2] * channels))
        return self.projection(self.dropout_layer(x, training=training))

    def compute_output_shape(self, input_shape):
        if not self.return_sequence:
            return (input_shape[0], self.units)
        shape = self._feature_shape(input_shape)
        return (input_shape[0], shape[1] * shape[2], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "units": self.units,
            "dropout": self.dropout,
            "pooling": self.pooling,
            "grid": self.grid,
            "return_sequence": self.return_sequence,
        }
