"""Progressive Layered Extraction: task-specific and shared experts in stacked levels (CGC with one level).

Tang, Liu, Zhao, Gong, "Progressive Layered Extraction (PLE): A Novel
Multi-Task Learning (MTL) Model for Personalized Recommendations", RecSys 2020.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from keras_mtmm.config.bounds import positive
from keras_mtmm.errors import ConfigError
from keras_mtmm.layers.encoders.layers import MLPBlock, check_activation
from keras_mtmm.layers.sharing.mmoe import (
    EXPERT_WIDTHS,
    add_stacked_dense,
    check_count,
    check_dropout,
    check_task_names,
    check_units,
)
from keras_mtmm.registry import SHARINGS


@dataclass
class PLEConfig:
    """`sharing.ple`: the levels, the shared and per-task experts of each, and each expert's widths."""

    num_shared_experts: int = 2
    num_task_experts: int = 1
    num_levels: int = 1
    expert_units: list[int] = field(default_factory=lambda: [64])


@SHARINGS.register("ple")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class PLE(keras.layers.Layer):
    """Progressive Layered Extraction: levels of task and shared experts, gated per task.

    Each level holds S shared experts and K experts per task, all MLPs of
    Dense(relu) layers (`expert_units`); each group runs as one `einsum` per
    layer over stacked kernels. Task t's gate is a softmax over its own K
    experts followed by the S shared ones, and reads task t's representation
    from the level below (the layer input at level 0); the gated mixture is
    task t's representation at this level. Every level but the last also has a
    shared gate over all T·K + S experts, reading the shared representation;
    its mixture is the next level's shared representation. The last level's
    task representations go through one tower per task. With
    `num_levels == 1` this is CGC (Customized Gate Control). Dropout, when
    set, follows every expert and tower layer.

    Tang et al., "Progressive Layered Extraction (PLE): A Novel Multi-Task
    Learning (MTL) Model for Personalized Recommendations", RecSys 2020.

    Args:
        task_names: the tasks, in order; the output dict is keyed by them.
        num_levels: the number of stacked extraction levels (>= 1).
        num_shared_experts: S, shared experts per level (>= 0; 0 only with
            `num_levels == 1`).
        num_task_experts: K, experts per task per level (>= 0; K + S >= 1).
        expert_units: widths of each expert's Dense(relu) layers (>= 1 layer).
        tower_units: widths of each task tower's Dense(relu) layers (empty:
            the last level's task representation is the output).
        dropout: dropout rate after every expert and tower layer.

    Returns (from `call`):
        A dict `{task_name: tower_output}`.

    Example:
        >>> ple = PLE(["a", "b"], num_levels=2, num_shared_experts=2, num_task_experts=1,
        ...           expert_units=[16], tower_units=[8])
        >>> {k: tuple(v.shape) for k, v in ple(keras.ops.ones((2, 10))).items()}
        {'a': (2, 8), 'b': (2, 8)}
        >>> ple.expert_names("a")
        ['a_0', 'shared_0', 'shared_1']
    """

    config_class = PLEConfig
    checks = (positive("num_levels"), EXPERT_WIDTHS)

    @classmethod
    def check_config(cls, options: PLEConfig, sharing, config, where: str) -> None:
        """Every task's gate has an expert; stacked levels pass through shared experts."""
        for key in ("num_shared_experts", "num_task_experts"):
            if getattr(options, key) < 0:
                raise ConfigError(f"{where}.{key}", f"expected 0 or more, got {getattr(options, key)}", "e.g. 1")
        if options.num_shared_experts + options.num_task_experts < 1:
            raise ConfigError(
                f"{where}.num_task_experts",
                "each task's gate needs at least one expert, got 0 shared and 0 task experts",
                "set num_shared_experts or num_task_experts to 1 or more",
            )
        if options.num_levels > 1 and options.num_shared_experts < 1:
            raise ConfigError(
                f"{where}.num_shared_experts",
                "stacked PLE levels pass information through the shared experts, got 0",
                "set num_shared_experts >= 1 or num_levels: 1",
            )

    @classmethod
    def from_settings(cls, sharing, task_names: list[str], name: str):
        """The layer a `SharingConfig` (`sharing`) describes. (Keras' `from_config` is deserialization.)"""
        options = sharing.get()
        return cls(
            task_names,
            num_levels=options.num_levels,
            num_shared_experts=options.num_shared_experts,
            num_task_experts=options.num_task_experts,
            expert_units=options.expert_units,
            tower_units=sharing.tower_units,
            dropout=sharing.dropout,
            activation=sharing.activation,
            name=name,
        )

    def __init__(
        self,
        task_names: list[str],
        num_levels: int,
        num_shared_experts: int,
        num_task_experts: int,
        expert_units: list[int],
        tower_units: list[int],
        dropout: float = 0.0,
        activation: str = "relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.task_names = check_task_names("PLE", task_names)
        self.num_levels = check_count("PLE", "num_levels", num_levels, 1)
        self.num_shared_experts = check_count("PLE", "num_shared_experts", num_shared_experts, 0)
        self.num_task_experts = check_count("PLE", "num_task_experts", num_task_experts, 0)
        if self.num_shared_experts + self.num_task_experts < 1:
            raise ValueError(
                "PLE: num_task_experts + num_shared_experts must be >= 1 (each task gate needs an expert), got 0"
            )
        if self.num_levels > 1 and self.num_shared_experts < 1:
            raise ValueError(
                f"PLE: num_shared_experts must be >= 1 when num_levels > 1 (levels pass information through "
                f"the shared experts), got 0 with num_levels={self.num_levels}"
            )
        self.expert_units = check_units("PLE", "expert_units", expert_units, allow_empty=False)
        self.tower_units = check_units("PLE", "tower_units", tower_units, allow_empty=True)
        self.dropout = check_dropout("PLE", dropout)
        self.activation = check_activation("PLE", activation)
        self.towers = {
            task: MLPBlock(self.tower_units, dropout, self.activation, name=f"tower_{task}") for task in self.task_names
        }
        self.dropout_layer = keras.layers.Dropout(dropout) if dropout > 0 else None

    def build(self, input_shape):
        num_tasks, k, s = len(self.task_names), self.num_task_experts, self.num_shared_experts
        # levels[l] maps a weight's role to the variable(s); expert weights are lists, one entry per expert layer.
        self.levels = []
        input_dim = int(input_shape[-1])
        for level in range(self.num_levels):
            weights = {"task_kernels": [], "task_biases": [], "shared_kernels": [], "shared_biases": []}
            fan_in = input_dim
            for i, units in enumerate(self.expert_units):
                if k:
                    name = f"level_{level}_task_expert_{i}"
                    kernel, bias = add_stacked_dense(self, name, (num_tasks, k), fan_in, units)
                    weights["task_kernels"].append(kernel)
                    weights["task_biases"].append(bias)
                if s:
                    kernel, bias = add_stacked_dense(self, f"level_{level}_shared_expert_{i}", (s,), fan_in, units)
                    weights["shared_kernels"].append(kernel)
                    weights["shared_biases"].append(bias)
                fan_in = units
            # One gate per task over [its K experts, the S shared experts]: kernel [T, in, K + S].
            weights["task_gate"] = add_stacked_dense(self, f"level_{level}_task_gate", (num_tasks,), input_dim, k + s)
            if level < self.num_levels - 1:
                weights["shared_gate"] = add_stacked_dense(
                    self, f"level_{level}_shared_gate", (), input_dim, num_tasks * k + s
                )
            self.levels.append(weights)
            input_dim = self.expert_units[-1]
        for tower in self.towers.values():
            tower.build((input_shape[0], self.expert_units[-1]))

    def _run_experts(self, x, kernels, biases, first_equation, equation, training):
        for i, (kernel, bias) in enumerate(zip(kernels, biases)):
            x = keras.ops.einsum(first_equation if i == 0 else equation, x, kernel) + bias
            x = keras.activations.get(self.activation)(x)
            if self.dropout_layer is not None:
                x = self.dropout_layer(x, training=training)
        return x

    def _forward(self, inputs, training=None):
        """Run all levels: the last level's task representations `[batch, T, d]` and gates `[batch, T, K + S]`."""
        k, s = self.num_task_experts, self.num_shared_experts
        task_inputs, shared_input = None, inputs  # at level 0 every task reads `inputs`
        for weights in self.levels:
            first = task_inputs is None
            task_x = inputs if first else task_inputs
            gate_kernel, gate_bias = weights["task_gate"]
            gate_equation = "bi,tie->bte" if first else "bti,tie->bte"
            gates = keras.ops.softmax(keras.ops.einsum(gate_equation, task_x, gate_kernel) + gate_bias, axis=-1)
            mixtures = 0.0
            if k:
                task_experts = self._run_experts(  # [batch, T, K, d]
                    task_x,
                    weights["task_kernels"],
                    weights["task_biases"],
                    "bi,tkio->btko" if first else "bti,tkio->btko",
                    "btki,tkio->btko",
                    training,
                )
                mixtures = mixtures + keras.ops.einsum("btk,btkd->btd", gates[..., :k], task_experts)
            if s:
                shared_experts = self._run_experts(  # [batch, S, d]
                    shared_input,
                    weights["shared_kernels"],
                    weights["shared_biases"],
                    "bi,sio->bso",
                    "bsi,sio->bso",
                    training,
                )
                mixtures = mixtures + keras.ops.einsum("bts,bsd->btd", gates[..., k:], shared_experts)
            if "shared_gate" in weights:
                kernel, bias = weights["shared_gate"]
                shared_gates = keras.ops.softmax(keras.ops.matmul(shared_input, kernel) + bias, axis=-1)
                num_tasks = len(self.task_names)
                shared_input = keras.ops.einsum("bs,bsd->bd", shared_gates[:, num_tasks * k :], shared_experts)
                if k:
                    task_part = keras.ops.reshape(shared_gates[:, : num_tasks * k], (-1, num_tasks, k))
                    shared_input = shared_input + keras.ops.einsum("btk,btkd->bd", task_part, task_experts)
            task_inputs = mixtures
        return task_inputs, gates

    def call(self, inputs, training=None):
        representations, _ = self._forward(inputs, training=training)
        return {
            task: self.towers[task](representations[:, index, :], training=training)
            for index, task in enumerate(self.task_names)
        }

    def gate_weights(self, inputs) -> dict:
        """The last level's task gate values `{task: [batch, K + S]}` (rows sum to 1); see `expert_names`."""
        inputs = keras.ops.convert_to_tensor(inputs, dtype=self.compute_dtype)
        if not self.built:
            self.build(tuple(inputs.shape))
        _, gates = self._forward(inputs, training=False)
        return {task: gates[:, index, :] for index, task in enumerate(self.task_names)}

    def expert_names(self, task: str) -> list[str]:
        """Names of the experts task `task`'s gate mixes, in the order of its gate values' columns."""
        if task not in self.task_names:
            raise ValueError(f"PLE: task must be one of {self.task_names}, got {task!r}")
        return [f"{task}_{i}" for i in range(self.num_task_experts)] + [
            f"shared_{i}" for i in range(self.num_shared_experts)
        ]

    def compute_output_shape(self, input_shape):
        width = (self.tower_units or self.expert_units)[-1]
        return {task: (input_shape[0], width) for task in self.task_names}

    def get_config(self):
        return {
            **super().get_config(),
            "task_names": self.task_names,
            "num_levels": self.num_levels,
            "num_shared_experts": self.num_shared_experts,
            "num_task_experts": self.num_task_experts,
            "expert_units": self.expert_units,
            "tower_units": self.tower_units,
            "dropout": self.dropout,
            "activation": self.activation,
        }
