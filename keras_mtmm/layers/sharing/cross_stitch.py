"""Cross-stitch units: one column per task, mixed by a learned T×T matrix after every layer.

Misra, Shrivastava, Gupta, Hebert, "Cross-stitch Networks for Multi-task
Learning", CVPR 2016.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from keras_mtmm.config.bounds import Widths
from keras_mtmm.layers.encoders.layers import MLPBlock, check_activation
from keras_mtmm.layers.sharing.mmoe import add_stacked_dense, check_dropout, check_task_names, check_units
from keras_mtmm.registry import SHARINGS


def stitch_initial_matrix(num_tasks: int, stitch_init: float) -> np.ndarray:
    """`stitch_init` on the diagonal, `(1 - stitch_init) / (T - 1)` elsewhere (rows sum to 1); identity if T == 1."""
    if num_tasks == 1:
        return np.ones((1, 1), dtype=np.float32)
    off_diagonal = (1.0 - stitch_init) / (num_tasks - 1)
    matrix = np.full((num_tasks, num_tasks), off_diagonal, dtype=np.float32)
    np.fill_diagonal(matrix, stitch_init)
    return matrix


@dataclass
class CrossStitchConfig:
    """`sharing.cross_stitch`: each task column's widths."""

    shared_units: list[int] = field(default_factory=lambda: [128, 64])


@SHARINGS.register("cross_stitch")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class CrossStitch(keras.layers.Layer):
    """Cross-stitch network: one Dense(relu) column per task, columns mixed by a learned T×T matrix per layer.

    Every task has its own column of Dense(relu) layers (`column_units`); all
    columns read the layer input and run at once, one `einsum` per layer over
    stacked kernels `[T, in, out]`. After layer l a cross-stitch unit, a
    learned matrix α_l, mixes the task activations: `h̃_t = Σ_s α_l[t, s] h_s`,
    and h̃ feeds the next layer. Each task's last column output then goes
    through its tower. Dropout, when set, follows every stitched layer and
    every tower layer.

    Misra et al., "Cross-stitch Networks for Multi-task Learning", CVPR 2016.

    Args:
        task_names: the tasks, in order; the output dict is keyed by them.
        column_units: widths of each column's Dense(relu) layers (>= 1 layer).
        tower_units: widths of each task tower's Dense(relu) layers (empty:
            the stitched column output is the output).
        dropout: dropout rate after every column and tower layer.
        stitch_init: initial diagonal of every α_l, in (0, 1]; the rest of
            each row starts at `(1 - stitch_init) / (T - 1)` (α_l starts as
            the identity when there is one task).

    Returns (from `call`):
        A dict `{task_name: tower_output}`.

    Example:
        >>> stitch = CrossStitch(["a", "b"], column_units=[16, 8], tower_units=[4])
        >>> {k: tuple(v.shape) for k, v in stitch(keras.ops.ones((2, 10))).items()}
        {'a': (2, 4), 'b': (2, 4)}
        >>> stitch.stitch_matrices()[0]
        array([[0.9, 0.1],
               [0.1, 0.9]], dtype=float32)
    """

    config_class = CrossStitchConfig
    checks = (
        Widths(
            "shared_units", allow_empty=False, empty="cross-stitch needs at least one column layer", example="[64, 32]"
        ),
    )

    @classmethod
    def from_settings(cls, sharing, task_names: list[str], name: str):
        """The layer a `SharingConfig` (`sharing`) describes. (Keras' `from_config` is deserialization.)"""
        return cls(
            task_names,
            column_units=sharing.get().shared_units,
            tower_units=sharing.tower_units,
            dropout=sharing.dropout,
            activation=sharing.activation,
            name=name,
        )

    def __init__(
        self,
        task_names: list[str],
        column_units: list[int],
        tower_units: list[int],
        dropout: float = 0.0,
        activation: str = "relu",
        stitch_init: float = 0.9,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.task_names = check_task_names("CrossStitch", task_names)
        self.column_units = check_units("CrossStitch", "column_units", column_units, allow_empty=False)
        self.tower_units = check_units("CrossStitch", "tower_units", tower_units, allow_empty=True)
        self.dropout = check_dropout("CrossStitch", dropout)
        self.activation = check_activation("CrossStitch", activation)
        if not 0.0 < stitch_init <= 1.0:
            raise ValueError(f"CrossStitch: stitch_init must be in (0, 1], got {stitch_init}")
        self.stitch_init = stitch_init
        self.towers = {
            task: MLPBlock(self.tower_units, dropout, self.activation, name=f"tower_{task}") for task in self.task_names
        }
        self.dropout_layer = keras.layers.Dropout(dropout) if dropout > 0 else None

    def build(self, input_shape):
        num_tasks = len(self.task_names)
        initial = stitch_initial_matrix(num_tasks, self.stitch_init)
        self.column_kernels, self.column_biases, self.stitches = [], [], []
        fan_in = int(input_shape[-1])
        for i, units in enumerate(self.column_units):
            kernel, bias = add_stacked_dense(self, f"column_{i}", (num_tasks,), fan_in, units)
            self.column_kernels.append(kernel)
            self.column_biases.append(bias)
            self.stitches.append(
                self.add_weight(
                    name=f"stitch_{i}",
                    shape=(num_tasks, num_tasks),
                    initializer=lambda shape, dtype=None: keras.ops.convert_to_tensor(initial, dtype=dtype),
                )
            )
            fan_in = units
        for tower in self.towers.values():
            tower.build((input_shape[0], self.column_units[-1]))

    def call(self, inputs, training=None):
        x = inputs
        for i, (kernel, bias, stitch) in enumerate(zip(self.column_kernels, self.column_biases, self.stitches)):
            x = keras.ops.einsum("bi,tio->bto" if i == 0 else "bti,tio->bto", x, kernel)
            x = keras.ops.einsum("ts,bsd->btd", stitch, keras.activations.get(self.activation)(x + bias))
            if self.dropout_layer is not None:
                x = self.dropout_layer(x, training=training)
        return {
            task: self.towers[task](x[:, index, :], training=training) for index, task in enumerate(self.task_names)
        }

    def stitch_matrices(self) -> list[np.ndarray]:
        """The current α_l, one `[T, T]` array per column layer (row t: how much task t reads from each task)."""
        return [keras.ops.convert_to_numpy(stitch) for stitch in self.stitches]

    def compute_output_shape(self, input_shape):
        width = (self.tower_units or self.column_units)[-1]
        return {task: (input_shape[0], width) for task in self.task_names}

    def get_config(self):
        return {
            **super().get_config(),
            "task_names": self.task_names,
            "column_units": self.column_units,
            "tower_units": self.tower_units,
            "dropout": self.dropout,
            "activation": self.activation,
            "stitch_init": self.stitch_init,
        }
