"""The task head: a Dense layer with the task type's activation, and regression's target scaling."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="keras_mtmm")
class TaskHead(keras.layers.Layer):
    """The output layer of one task: a Dense projection and its activation.

    For regression the output is `dense(x) * target_scale + target_offset`
    (the training targets' std and mean), so the layer learns on a unit scale,
    starts near the mean, and still outputs values in the label's units.

    Args:
        units: output width (1 for binary/regression, the class count otherwise).
        activation: `"sigmoid"`, `"softmax"` or `"linear"`.
        target_scale: multiplies a linear output (regression targets' std).
        target_offset: is added to a linear output (regression targets' mean).

    Example:
        >>> head = TaskHead(units=3, activation="softmax", name="shape")
    """

    def __init__(self, units: int, activation: str, target_scale: float = 1.0, target_offset: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if units < 1:
            raise ValueError(f"TaskHead: units must be >= 1, got {units}")
        if activation not in ("sigmoid", "softmax", "linear"):
            raise ValueError(f"TaskHead: activation must be sigmoid, softmax or linear, got {activation!r}")
        if activation != "linear" and (target_scale != 1.0 or target_offset != 0.0):
            raise ValueError("TaskHead: target_scale/target_offset apply to a linear activation only")
        if target_scale <= 0:
            raise ValueError(f"TaskHead: target_scale must be > 0, got {target_scale}")
        self.units = units
        self.activation = activation
        self.target_scale = float(target_scale)
        self.target_offset = float(target_offset)
        self.dense = keras.layers.Dense(units, activation=activation, dtype="float32", name="dense")

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, inputs):
        outputs = self.dense(inputs)
        if self.target_scale != 1.0 or self.target_offset != 0.0:
            outputs = outputs * self.target_scale + self.target_offset
        return outputs

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": self.activation,
            "target_scale": self.target_scale,
            "target_offset": self.target_offset,
        }


@keras.saving.register_keras_serializable(package="keras_mtmm")
class TokenHead(keras.layers.Layer):
    """The output layer of a token task: a softmax over the classes at each position it is asked for, else 0.

    `call(sequence [B, L, D], asked [B, L])` -> `[B, L, units]`; a position where `asked` is 0
    (padding for a tagger; a token not hidden for a masked language model) gets all-zero
    probabilities, so the output itself says which positions it predicts.

    Args:
        units: the class (tag) count.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        if units < 2:
            raise ValueError(f"TokenHead: units must be >= 2, got {units}")
        self.units = units
        self.dense = keras.layers.Dense(units, activation="softmax", dtype="float32", name="dense")

    def build(self, sequence_shape, asked_shape=None):
        self.dense.build(sequence_shape)

    def call(self, sequence, asked):
        return self.dense(sequence) * keras.ops.expand_dims(keras.ops.cast(asked, "float32"), -1)

    def compute_output_shape(self, sequence_shape, asked_shape=None):
        return (*sequence_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}
