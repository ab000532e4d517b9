"""Multi-gate Mixture-of-Experts: experts shared by all tasks, one softmax gate per task.

Ma, Zhao, Yi, Chen, Hong, Chi, "Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts", KDD 2018.

This module also holds the small helpers the other expert-based sharing
layers (`ple.py`, `cross_stitch.py`) use: argument checks and the
initializer of stacked (batched) Dense kernels.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import keras

from keras_mtmm.config.bounds import Widths, positive
from keras_mtmm.layers.encoders.layers import MLPBlock, check_activation
from keras_mtmm.registry import SHARINGS


def stacked_kernel_initializer(fan_in: int, fan_out: int) -> keras.initializers.Initializer:
    """Glorot-uniform limits of one `fan_in -> fan_out` Dense kernel, for a stack of many such kernels.

    Keras' `glorot_uniform` treats the leading axes of a `[E, in, out]` kernel
    as a receptive field and would shrink every expert's weights by √E; each
    expert here gets the limits a lone `Dense(fan_out)` would.
    """
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return keras.initializers.RandomUniform(minval=-limit, maxval=limit)


def add_stacked_dense(layer: keras.layers.Layer, name: str, stack: tuple[int, ...], fan_in: int, fan_out: int):
    """Create the kernel `[*stack, fan_in, fan_out]` and bias `[*stack, fan_out]` of a stack of Dense layers."""
    kernel = layer.add_weight(
        name=f"{name}_kernel", shape=(*stack, fan_in, fan_out), initializer=stacked_kernel_initializer(fan_in, fan_out)
    )
    bias = layer.add_weight(name=f"{name}_bias", shape=(*stack, fan_out), initializer="zeros")
    return kernel, bias


def check_task_names(owner: str, task_names) -> list[str]:
    """The task names as a list; ValueError unless they are non-empty and unique."""
    task_names = list(task_names)
    if not task_names or len(set(task_names)) != len(task_names):
        raise ValueError(f"{owner}: task_names must be non-empty and unique, got {task_names}")
    return task_names


def check_units(owner: str, argument: str, units, allow_empty: bool) -> list[int]:
    """Layer widths as a list of ints; ValueError unless positive (and non-empty if required)."""
    units = [int(u) for u in units]
    if not units and not allow_empty:
        raise ValueError(f"{owner}: {argument} needs at least one layer width, got {units}")
    if any(u < 1 for u in units):
        raise ValueError(f"{owner}: {argument} must be positive, got {units}")
    return units


def check_count(owner: str, argument: str, value: int, minimum: int) -> int:
    """An integer count; ValueError if it is below `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{owner}: {argument} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_dropout(owner: str, dropout: float) -> float:
    """A dropout rate in [0, 1)."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{owner}: dropout must be in [0, 1), got {dropout}")
    return dropout


@dataclass
class MMoEConfig:
    """`sharing.mmoe`: the number of experts and each expert's widths."""

    num_experts: int = 4
    expert_units: list[int] = field(default_factory=lambda: [64])


EXPERT_WIDTHS = Widths("expert_units", allow_empty=False, empty="experts need at least one layer")


@SHARINGS.register("mmoe")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class MMoE(keras.layers.Layer):
    """Multi-gate Mixture-of-Experts: E shared MLP experts mixed by one softmax gate per task.

    Every expert is an MLP of Dense(relu) layers (`expert_units`); all E
    experts run at once, one `einsum` per layer over stacked kernels
    `[E, in, out]`. Task k's gate is `g_k(x) = softmax(W_k x + b_k)` over the
    experts, and its tower reads the mixture `Σ_e g_k(x)_e · f_e(x)`. Dropout,
    when set, follows every expert layer and every tower layer.

    Ma et al., "Modeling Task Relationships in Multi-task Learning with
    Multi-gate Mixture-of-Experts", KDD 2018.

    Args:
        task_names: the tasks, in order; the output dict is keyed by them.
        num_experts: E, the number of experts (>= 1).
        expert_units: widths of each expert's Dense(relu) layers (>= 1 layer).
        tower_units: widths of each task tower's Dense(relu) layers (empty:
            the mixture is the output).
        dropout: dropout rate after every expert and tower layer.

    Returns (from `call`):
        A dict `{task_name: tower_output}`.

    Example:
        >>> mmoe = MMoE(["a", "b"], num_experts=4, expert_units=[16], tower_units=[8])
        >>> {k: tuple(v.shape) for k, v in mmoe(keras.ops.ones((2, 10))).items()}
        {'a': (2, 8), 'b': (2, 8)}
        >>> tuple(mmoe.gate_weights(keras.ops.ones((2, 10)))["a"].shape)
        (2, 4)
    """

    config_class = MMoEConfig
    checks = (positive("num_experts", "4"), EXPERT_WIDTHS)

    @classmethod
    def from_settings(cls, sharing, task_names: list[str], name: str):
        """The layer a `SharingConfig` (`sharing`) describes. (Keras' `from_config` is deserialization.)"""
        options = sharing.get()
        return cls(
            task_names,
            num_experts=options.num_experts,
            expert_units=options.expert_units,
            tower_units=sharing.tower_units,
            dropout=sharing.dropout,
            activation=sharing.activation,
            name=name,
        )

    def __init__(
        self,
        task_names: list[str],
        num_experts: int,
        expert_units: list[int],
        tower_units: list[int],
        dropout: float = 0.0,
        activation: str = "relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.task_names = check_task_names("MMoE", task_names)
        self.num_experts = check_count("MMoE", "num_experts", num_experts, 1)
        self.expert_units = check_units("MMoE", "expert_units", expert_units, allow_empty=False)
        self.tower_units = check_units("MMoE", "tower_units", tower_units, allow_empty=True)
        self.dropout = check_dropout("MMoE", dropout)
        self.activation = check_activation("MMoE", activation)
        self.towers = {
            task: MLPBlock(self.tower_units, dropout, self.activation, name=f"tower_{task}") for task in self.task_names
        }
        self.dropout_layer = keras.layers.Dropout(dropout) if dropout > 0 else None

    def build(self, input_shape):
        input_dim = int(input_shape[-1])
        self.expert_kernels, self.expert_biases = [], []
        fan_in = input_dim
        for i, units in enumerate(self.expert_units):
            kernel, bias = add_stacked_dense(self, f"expert_{i}", (self.num_experts,), fan_in, units)
            self.expert_kernels.append(kernel)
            self.expert_biases.append(bias)
            fan_in = units
        self._build_gates(input_dim)
        for tower in self.towers.values():
            tower.build((input_shape[0], self.expert_units[-1]))

    def _build_gates(self, input_dim: int) -> None:
        """All task gates in one stack: kernel `[T, in, E]`, bias `[T, E]` (DSelect-k builds its own)."""
        self.gate_kernel, self.gate_bias = add_stacked_dense(
            self, "gate", (len(self.task_names),), input_dim, self.num_experts
        )

    def _experts(self, inputs, training=None):
        """All expert outputs, `[batch, E, expert_units[-1]]`."""
        x = inputs
        for i, (kernel, bias) in enumerate(zip(self.expert_kernels, self.expert_biases)):
            x = keras.ops.einsum("bi,eio->beo" if i == 0 else "bei,eio->beo", x, kernel)
            x = keras.activations.get(self.activation)(x + bias)
            if self.dropout_layer is not None:
                x = self.dropout_layer(x, training=training)
        return x

    def _gates(self, inputs):
        """All task gates, `[batch, T, E]`, each row a softmax over the experts."""
        logits = keras.ops.einsum("bi,tie->bte", inputs, self.gate_kernel) + self.gate_bias
        return keras.ops.softmax(logits, axis=-1)

    def call(self, inputs, training=None):
        experts = self._experts(inputs, training=training)
        mixtures = keras.ops.einsum("bte,bed->btd", self._gates(inputs), experts)
        return {
            task: self.towers[task](mixtures[:, index, :], training=training)
            for index, task in enumerate(self.task_names)
        }

    def gate_weights(self, inputs) -> dict:
        """The gate values `{task: [batch, E]}` for `inputs` (each row sums to 1), for inspection."""
        inputs = keras.ops.convert_to_tensor(inputs, dtype=self.compute_dtype)
        if not self.built:
            self.build(tuple(inputs.shape))
        gates = self._gates(inputs)
        return {task: gates[:, index, :] for index, task in enumerate(self.task_names)}

    def expert_names(self, task: str) -> list[str]:
        """Names of the experts task `task`'s gate mixes (all tasks share them), in gate-column order.

        Same signature as `PLE.expert_names`, so reports treat both alike.
        """
        if task not in self.task_names:
            raise ValueError(f"MMoE: task must be one of {self.task_names}, got {task!r}")
        return [f"expert_{e}" for e in range(self.num_experts)]

    def compute_output_shape(self, input_shape):
        width = (self.tower_units or self.expert_units)[-1]
        return {task: (input_shape[0], width) for task in self.task_names}

    def get_config(self):
        return {
            **super().get_config(),
            "task_names": self.task_names,
            "num_experts": self.num_experts,
            "expert_units": self.expert_units,
            "tower_units": self.tower_units,
            "dropout": self.dropout,
            "activation": self.activation,
        }
