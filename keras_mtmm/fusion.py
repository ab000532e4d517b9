"""Fusion strategies: how modality features (or decisions) are combined.

- `early`: concatenate the modality feature vectors (feature-level fusion).
- `weighted`: project each modality to one width and take `h = Σ_i w_i h_i`,
  with w fixed from the config or learned as a softmax of logits.
- `late`: decision-level fusion (Baltrušaitis et al., "Multimodal Machine
  Learning: A Survey and Taxonomy", 2018): each modality gets its own trunk
  and task heads, and each task's prediction is the weighted average of the
  per-modality predictions.

Each strategy is a registered, serializable Keras layer; `is_decision_level`
tells the model builder where it goes.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_mtmm.registries import FUSIONS


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


def build_fusion(strategy: str, num_modalities: int, units: int, modality_weights: list[float] | None, name: str):
    """Build the fusion layer a config names (explicit arguments, no config objects)."""
    layer_class = FUSIONS.get(strategy)
    if layer_class is ConcatFusion:
        return ConcatFusion(name=name)
    if layer_class is WeightedSumFusion:
        return WeightedSumFusion(num_modalities, units=units, modality_weights=modality_weights, name=name)
    if layer_class is LateFusion:
        return LateFusion(num_modalities, modality_weights=modality_weights, name=name)
    raise ValueError(f"no builder for fusion strategy {strategy!r}")
