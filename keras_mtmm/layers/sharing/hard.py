"""Hard parameter sharing (shared-bottom): one shared trunk, one tower per task.

Caruana, "Multitask Learning", Machine Learning 28, 1997.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from keras_mtmm.config.bounds import Widths
from keras_mtmm.layers.encoders.layers import MLPBlock, check_activation
from keras_mtmm.registry import SHARINGS


@dataclass
class HardSharingConfig:
    """`sharing.hard`: the shared trunk's widths."""

    shared_units: list[int] = field(default_factory=lambda: [128, 64])


@SHARINGS.register("hard")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class HardSharing(keras.layers.Layer):
    """A shared MLP trunk followed by one MLP tower per task.

    Args:
        task_names: the tasks, in order; the output dict is keyed by them.
        shared_units: widths of the shared trunk's Dense(relu) layers.
        tower_units: widths of each task tower's Dense(relu) layers.
        dropout: dropout rate after every Dense layer.

    Returns (from `call`):
        A dict `{task_name: tower_output}`.

    Example:
        >>> sharing = HardSharing(["a", "b"], shared_units=[32], tower_units=[16])
        >>> {k: v.shape for k, v in sharing(keras.ops.ones((4, 8))).items()}
        {'a': (4, 16), 'b': (4, 16)}
    """

    config_class = HardSharingConfig
    checks = (Widths("shared_units"),)

    @classmethod
    def from_settings(cls, sharing, task_names: list[str], name: str):
        """The layer a `SharingConfig` (`sharing`) describes. (Keras' `from_config` is deserialization.)"""
        return cls(
            task_names,
            shared_units=sharing.get().shared_units,
            tower_units=sharing.tower_units,
            dropout=sharing.dropout,
            activation=sharing.activation,
            name=name,
        )

    def __init__(
        self,
        task_names: list[str],
        shared_units: list[int],
        tower_units: list[int],
        dropout: float = 0.0,
        activation: str = "relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        task_names = list(task_names)
        if not task_names or len(set(task_names)) != len(task_names):
            raise ValueError(f"HardSharing: task_names must be non-empty and unique, got {task_names}")
        self.task_names = task_names
        self.shared_units = [int(u) for u in shared_units]
        self.tower_units = [int(u) for u in tower_units]
        self.dropout = dropout
        self.activation = check_activation("HardSharing", activation)
        self.trunk = MLPBlock(self.shared_units, dropout, self.activation, name="trunk")
        self.towers = {
            task: MLPBlock(self.tower_units, dropout, self.activation, name=f"tower_{task}") for task in task_names
        }

    def build(self, input_shape):
        self.trunk.build(input_shape)
        shared_shape = self.trunk.compute_output_shape(input_shape)
        for tower in self.towers.values():
            tower.build(shared_shape)

    def call(self, inputs, training=None):
        shared = self.trunk(inputs, training=training)
        return {task: tower(shared, training=training) for task, tower in self.towers.items()}

    def compute_output_shape(self, input_shape):
        width = (self.tower_units or self.shared_units or [input_shape[-1]])[-1]
        return {task: (input_shape[0], width) for task in self.task_names}

    def get_config(self):
        return {
            **super().get_config(),
            "task_names": self.task_names,
            "shared_units": self.shared_units,
            "tower_units": self.tower_units,
            "dropout": self.dropout,
            "activation": self.activation,
        }
