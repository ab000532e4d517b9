"""Fusion strategies: how modality features (or decisions) are combined.

- `early`: concatenate the modality feature vectors (feature-level fusion).
- `weighted`: project each modality to one width and take `h = Σ_i w_i h_i`,
  with w fixed from the config or learned as a softmax of logits.
- `late`: decision-level fusion (Baltrušaitis et al., "Multimodal Machine
  Learning: A Survey and Taxonomy", 2018): each modality gets its own trunk
  and task heads, and each task's prediction is the weighted average of the
  per-modality predictions.
- `gated`: a gated multimodal unit (Arevalo et al., 2017) for M modalities:
  per-example softmax gates over tanh projections.
- `attention`: per-example attention over projected modality vectors.
- `low_rank`: low-rank multimodal (tensor) fusion (Liu et al., ACL 2018).

Each strategy is a registered, serializable Keras layer; `is_decision_level`
tells the model builder where it goes.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_mtmm.registries import FUSIONS

# The rank `low_rank` fusion gets from `build_fusion` (no config key for it yet).
DEFAULT_RANK = 4


def _normalized(weights: list[float] | None) -> list[float] | None:
    if weights is None:
        return None
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise ValueError(f"modality_weights must be non-negative with a positive sum, got {weights}")
    return [float(w) / total for w in weights]


class _ModalityWeights(keras.layers.Layer):
    """Base for layers that weigh M inputs: fixed weights, or softmax of learned logits."""

    def __init__(self, num_modalities: int, modality_weights: list[float] | None = None, **kwargs):
        super().__init__(**kwargs)
        if num_modalities < 1:
            raise ValueError(f"{type(self).__name__}: num_modalities must be >= 1, got {num_modalities}")
        if modality_weights is not None and len(modality_weights) != num_modalities:
            raise ValueError(
                f"{type(self).__name__}: expected {num_modalities} modality_weights, got {len(modality_weights)}"
            )
        self.num_modalities = num_modalities
        self.modality_weights = None if modality_weights is None else [float(w) for w in modality_weights]
        self._fixed = _normalized(self.modality_weights)
        if self._fixed is None:
            self.logits = self.add_weight(
                shape=(num_modalities,), initializer="zeros", trainable=True, name="modality_logits"
            )

    def weights_vector(self):
        """The weights used, as a tensor of shape [M] that sums to 1."""
        if self._fixed is not None:
            return keras.ops.convert_to_tensor(self._fixed, dtype=self.compute_dtype)
        return keras.ops.softmax(self.logits)

    def current_weights(self) -> np.ndarray:
        """The weights used, as NumPy (for reports)."""
        return np.asarray(keras.ops.convert_to_numpy(self.weights_vector()))

    def get_config(self):
        return {
            **super().get_config(),
            "num_modalities": self.num_modalities,
            "modality_weights": self.modality_weights,
        }


@FUSIONS.register("early")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class ConcatFusion(keras.layers.Layer):
    """Early fusion: concatenate the modality feature vectors.

    Example:
        >>> ConcatFusion()([keras.ops.ones((2, 3)), keras.ops.ones((2, 4))]).shape
        (2, 7)
    """

    is_decision_level = False

    def call(self, features):
        return keras.ops.concatenate(list(features), axis=-1)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], sum(shape[-1] for shape in input_shapes))


@FUSIONS.register("weighted")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class WeightedSumFusion(_ModalityWeights):
    """Weighted fusion `h = Σ_i w_i · W_i h_i`: project each modality to `units`, then sum.

    Args:
        num_modalities: M, the number of inputs.
        units: the common projection width.
        modality_weights: fixed weights (normalized to sum 1), or None to learn
            them as softmax(logits), initialised uniform.

    Example:
        >>> fusion = WeightedSumFusion(num_modalities=2, units=8)
        >>> fusion([keras.ops.ones((2, 3)), keras.ops.ones((2, 5))]).shape
        (2, 8)
    """

    is_decision_level = False

    def __init__(self, num_modalities: int, units: int = 64, modality_weights: list[float] | None = None, **kwargs):
        super().__init__(num_modalities, modality_weights, **kwargs)
        if units < 1:
            raise ValueError(f"WeightedSumFusion: units must be positive, got {units}")
        self.units = units
        self.projections = [keras.layers.Dense(units, name=f"projection_{i}") for i in range(num_modalities)]

    def build(self, input_shapes):
        for projection, shape in zip(self.projections, input_shapes):
            projection.build(tuple(shape))

    def call(self, features):
        features = list(features)
        if len(features) != self.num_modalities:
            raise ValueError(f"WeightedSumFusion: expected {self.num_modalities} inputs, got {len(features)}")
        weights = self.weights_vector()
        projected = keras.ops.stack([p(h) for p, h in zip(self.projections, features)], axis=1)
        return keras.ops.einsum("bmu,m->bu", projected, weights)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@FUSIONS.register("late")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class LateFusion(_ModalityWeights):
    """Decision-level fusion: the weighted average `Σ_m w_m p_m` of per-modality predictions.

    With weights summing to 1, an average of probability vectors is again a
    probability vector.

    Args:
        num_modalities: M, the number of per-modality predictions.
        modality_weights: fixed weights, or None to learn softmax(logits).

    Example:
        >>> LateFusion(num_modalities=2, modality_weights=[1, 3])([keras.ops.zeros((1, 1)), keras.ops.ones((1, 1))])
        # -> [[0.75]]
    """

    is_decision_level = True

    def call(self, predictions):
        predictions = list(predictions)
        if len(predictions) != self.num_modalities:
            raise ValueError(f"LateFusion: expected {self.num_modalities} inputs, got {len(predictions)}")
        stacked = keras.ops.stack(predictions, axis=1)
        return keras.ops.einsum("bm...,m->b...", stacked, self.weights_vector())

    def compute_output_shape(self, input_shapes):
        return tuple(input_shapes[0])


def _check_positive_int(owner: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return int(value)


def _check_input_count(owner: str, expected: int, got: int) -> None:
    if got != expected:
        raise ValueError(f"{owner}: expected {expected} inputs (num_modalities), got {got}")


def _feature_width(owner: str, index: int, shape) -> int:
    shape = tuple(shape)
    if len(shape) != 2 or shape[-1] is None:
        raise ValueError(f"{owner}: input {index} must have shape [batch, width] with a known width, got {shape}")
    return int(shape[-1])


@FUSIONS.register("gated")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class GatedFusion(keras.layers.Layer):
    """Gated multimodal unit (Arevalo et al., "Gated Multimodal Units for Information Fusion", ICLR workshop 2017).

    Generalised to M modalities::

        h_i = tanh(W_i x_i + b_i)                 # each modality projected to `units`
        z   = W_z [x_1; ...; x_M] + b_z           # gate logits, shape [B, M]
        g   = softmax(z) over the modalities      # one scalar gate per modality per example
        h   = Σ_i g_i · h_i

    The gates are per example and per modality (scalars, not per unit), and
    sum to 1 over the modalities; for M = 2 this is the paper's sigmoid form
    `h = g·h_1 + (1 − g)·h_2` with `g = σ(z_1 − z_2)` (with a scalar gate).
    Because the gates depend on the example there is no `current_weights`;
    use `gate_values(features)`.

    Args:
        num_modalities: M, the number of inputs.
        units: the width of the projections and of the output.

    Example:
        >>> fusion = GatedFusion(num_modalities=2, units=8)
        >>> fusion([keras.ops.ones((2, 3)), keras.ops.ones((2, 5))]).shape
        (2, 8)
    """

    is_decision_level = False

    def __init__(self, num_modalities: int, units: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.num_modalities = _check_positive_int("GatedFusion", "num_modalities", num_modalities)
        self.units = _check_positive_int("GatedFusion", "units", units)
        self.projections = [
            keras.layers.Dense(self.units, activation="tanh", name=f"projection_{i}")
            for i in range(self.num_modalities)
        ]
        self.gate = keras.layers.Dense(self.num_modalities, name="gate")

    def build(self, input_shapes):
        input_shapes = list(input_shapes)
        _check_input_count("GatedFusion", self.num_modalities, len(input_shapes))
        widths = [_feature_width("GatedFusion", i, shape) for i, shape in enumerate(input_shapes)]
        for projection, shape in zip(self.projections, input_shapes):
            projection.build(tuple(shape))
        self.gate.build((input_shapes[0][0], sum(widths)))

    def _inputs(self, features):
        features = list(features)
        _check_input_count("GatedFusion", self.num_modalities, len(features))
        return features

    def gate_values(self, features):
        """The gates softmax(z), a tensor of shape [B, M] whose rows sum to 1."""
        features = self._inputs(features)
        return keras.ops.softmax(self.gate(keras.ops.concatenate(features, axis=-1)), axis=-1)

    def call(self, features):
        features = self._inputs(features)
        gates = self.gate_values(features)
        projected = keras.ops.stack([p(x) for p, x in zip(self.projections, features)], axis=1)
        return keras.ops.einsum("bmu,bm->bu", projected, gates)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.units)

    def get_config(self):
        return {**super().get_config(), "num_modalities": self.num_modalities, "units": self.units}


@FUSIONS.register("attention")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class AttentionFusion(keras.layers.Layer):
    """Attention fusion over modalities (additive attention scores, as surveyed by Baltrušaitis et al., 2018).

    ::

        p_i = W_i x_i + b_i            # each modality projected to `units`
        s_i = vᵀ tanh(W_a p_i)         # W_a [units, units] and v [units] shared, no bias
        a   = softmax(s) over the modalities (per example)
        h   = Σ_i a_i p_i

    Because the weights depend on the example there is no `current_weights`;
    use `attention_weights(features)`.

    Args:
        num_modalities: M, the number of inputs.
        units: the width of the projections and of the output.

    Example:
        >>> fusion = AttentionFusion(num_modalities=2, units=8)
        >>> fusion([keras.ops.ones((2, 3)), keras.ops.ones((2, 5))]).shape
        (2, 8)
    """

    is_decision_level = False

    def __init__(self, num_modalities: int, units: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.num_modalities = _check_positive_int("AttentionFusion", "num_modalities", num_modalities)
        self.units = _check_positive_int("AttentionFusion", "units", units)
        self.projections = [keras.layers.Dense(self.units, name=f"projection_{i}") for i in range(self.num_modalities)]
        self.attention = keras.layers.Dense(self.units, activation="tanh", use_bias=False, name="attention")
        self.score = keras.layers.Dense(1, use_bias=False, name="score")

    def build(self, input_shapes):
        input_shapes = list(input_shapes)
        _check_input_count("AttentionFusion", self.num_modalities, len(input_shapes))
        for i, (projection, shape) in enumerate(zip(self.projections, input_shapes)):
            _feature_width("AttentionFusion", i, shape)
            projection.build(tuple(shape))
        self.attention.build((input_shapes[0][0], self.units))
        self.score.build((input_shapes[0][0], self.units))

    def _project(self, features):
        features = list(features)
        _check_input_count("AttentionFusion", self.num_modalities, len(features))
        return keras.ops.stack([p(x) for p, x in zip(self.projections, features)], axis=1)  # [B, M, U]

    def _weights(self, projected):
        scores = keras.ops.squeeze(self.score(self.attention(projected)), axis=-1)  # [B, M]
        return keras.ops.softmax(scores, axis=-1)

    def attention_weights(self, features):
        """The attention weights softmax(s), a tensor of shape [B, M] whose rows sum to 1."""
        return self._weights(self._project(features))

    def call(self, features):
        projected = self._project(features)
        return keras.ops.einsum("bmu,bm->bu", projected, self._weights(projected))

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.units)

    def get_config(self):
        return {**super().get_config(), "num_modalities": self.num_modalities, "units": self.units}


@FUSIONS.register("low_rank")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class LowRankFusion(keras.layers.Layer):
    """Low-rank multimodal fusion (Liu et al., "Efficient Low-rank Multimodal Fusion with Modality-Specific
    Factors", ACL 2018).

    A rank-`rank` factorisation of tensor fusion (the outer product of the
    1-appended modality vectors, Zadeh et al. 2017), computed without
    building the tensor::

        x̂_i = [x_i; 1]                                   # [B, d_i + 1]
        h   = Σ_r w_r · Π_i (x̂_i W_i^(r)) + b             # Π: elementwise over modalities

    with modality factors `W_i` of shape [rank, d_i + 1, units], rank weights
    `w` [rank] and bias `b` [units].

    Args:
        num_modalities: M, the number of inputs.
        units: the output width.
        rank: the number of rank-one terms.

    Example:
        >>> fusion = LowRankFusion(num_modalities=2, units=8, rank=4)
        >>> fusion([keras.ops.ones((2, 3)), keras.ops.ones((2, 5))]).shape
        (2, 8)
    """

    is_decision_level = False

    def __init__(self, num_modalities: int, units: int = 64, rank: int = DEFAULT_RANK, **kwargs):
        super().__init__(**kwargs)
        self.num_modalities = _check_positive_int("LowRankFusion", "num_modalities", num_modalities)
        self.units = _check_positive_int("LowRankFusion", "units", units)
        self.rank = _check_positive_int("LowRankFusion", "rank", rank)

    def build(self, input_shapes):
        input_shapes = list(input_shapes)
        _check_input_count("LowRankFusion", self.num_modalities, len(input_shapes))
        self.factors = [
            self.add_weight(
                shape=(self.rank, _feature_width("LowRankFusion", i, shape) + 1, self.units),
                initializer="glorot_normal",
                trainable=True,
                name=f"factor_{i}",
            )
            for i, shape in enumerate(input_shapes)
        ]
        self.rank_weights = self.add_weight(
            shape=(self.rank,), initializer="glorot_normal", trainable=True, name="rank_weights"
        )
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", trainable=True, name="bias")

    def call(self, features):
        features = list(features)
        _check_input_count("LowRankFusion", self.num_modalities, len(features))
        product = None
        for x, factor in zip(features, self.factors):
            x = keras.ops.cast(x, self.compute_dtype)
            x_hat = keras.ops.concatenate([x, keras.ops.ones_like(x[:, :1])], axis=-1)
            term = keras.ops.einsum("bd,rdu->bru", x_hat, factor)
            product = term if product is None else product * term
        return keras.ops.einsum("bru,r->bu", product, self.rank_weights) + self.bias

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "num_modalities": self.num_modalities,
            "units": self.units,
            "rank": self.rank,
        }


def build_fusion(
    strategy: str,
    num_modalities: int,
    units: int,
    modality_weights: list[float] | None,
    name: str,
    rank: int = DEFAULT_RANK,
):
    """Build the fusion layer a config names (explicit arguments, no config objects)."""
    layer_class = FUSIONS.get(strategy)
    if layer_class is ConcatFusion:
        return ConcatFusion(name=name)
    if layer_class is WeightedSumFusion:
        return WeightedSumFusion(num_modalities, units=units, modality_weights=modality_weights, name=name)
    if layer_class is LateFusion:
        return LateFusion(num_modalities, modality_weights=modality_weights, name=name)
    if layer_class in (GatedFusion, AttentionFusion, LowRankFusion):
        if modality_weights is not None:
            raise ValueError(
                f"fusion strategy {strategy!r} learns per-example weights; modality_weights must be None, "
                f"got {modality_weights}"
            )
        if layer_class is LowRankFusion:
            return LowRankFusion(num_modalities, units=units, rank=rank, name=name)
        return layer_class(num_modalities, units=units, name=name)
    raise ValueError(f"no builder for fusion strategy {strategy!r}")
