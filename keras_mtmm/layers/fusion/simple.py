"""Fusion by concatenation and by weighted sums: `early`, `intermediate`, `weighted`, `late`."""

from __future__ import annotations

from dataclasses import dataclass

import keras

from keras_mtmm.config.bounds import positive
from keras_mtmm.layers.encoders.layers import MLPBlock
from keras_mtmm.layers.fusion.base import (
    UNITS,
    FixedWeightsConfig,
    FusionSettings,
    ModalityWeights,
    ProjectedFusionConfig,
    WeightedFusionConfig,
    check_fixed_weights,
    check_input_count,
    check_positive_int,
    feature_width,
    presence_column,
    renormalize,
)
from keras_mtmm.registry import FUSIONS


def _masked(features, presence):
    """The features with each missing modality's vector set to zero."""
    if presence is None:
        return list(features)
    return [x * presence_column(presence, i, x.dtype) for i, x in enumerate(features)]


@FUSIONS.register("early")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class ConcatFusion(keras.layers.Layer):
    """Early fusion: concatenate the modality feature vectors (a missing modality's slot is zero).

    Example:
        >>> ConcatFusion()([keras.ops.ones((2, 3)), keras.ops.ones((2, 4))]).shape
        (2, 7)
    """

    is_decision_level = False

    @classmethod
    def from_settings(cls, settings: FusionSettings, name: str):
        return cls(name=name)

    def call(self, features, presence=None):
        return keras.ops.concatenate(_masked(features, presence), axis=-1)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], sum(shape[-1] for shape in input_shapes))


@dataclass
class IntermediateFusionConfig(ProjectedFusionConfig):
    """`fusion.intermediate`: the width and number of each modality's own layers."""

    depth: int = 1


@FUSIONS.register("intermediate")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class IntermediateFusion(keras.layers.Layer):
    """Intermediate fusion: `depth` modality-specific Dense(units, relu) blocks, then concatenation.

    Each modality's encoder output goes through its own block of `depth`
    layers, so every modality reaches the fusion point as a learned
    representation of the same width (Baltrušaitis et al., 2018, "fuse learned
    per-modality representations"); the fused vector is their concatenation,
    `[B, M · units]`, with a missing modality's slot at zero. The sharing
    block after it is the joint part of the network.

    Args:
        num_modalities: M, the number of inputs.
        units: the width of every modality-specific layer.
        depth: the number of modality-specific layers before fusion.

    Example:
        >>> fusion = IntermediateFusion(num_modalities=2, units=8, depth=2)
        >>> fusion([keras.ops.ones((2, 3)), keras.ops.ones((2, 5))]).shape
        (2, 16)
    """

    is_decision_level = False

    config_class = IntermediateFusionConfig
    checks = (UNITS, positive("depth"))

    @classmethod
    def from_settings(cls, settings: FusionSettings, name: str):
        options = settings.options
        return cls(settings.num_modalities, units=options.units, depth=options.depth, name=name)

    def __init__(self, num_modalities: int, units: int = 64, depth: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.num_modalities = check_positive_int("IntermediateFusion", "num_modalities", num_modalities)
        self.units = check_positive_int("IntermediateFusion", "units", units)
        self.depth = check_positive_int("IntermediateFusion", "depth", depth)
        self.blocks = [MLPBlock([self.units] * self.depth, name=f"block_{i}") for i in range(self.num_modalities)]

    def build(self, input_shapes):
        input_shapes = list(input_shapes)
        check_input_count("IntermediateFusion", self.num_modalities, len(input_shapes))
        for i, (block, shape) in enumerate(zip(self.blocks, input_shapes)):
            feature_width("IntermediateFusion", i, shape)
            block.build(tuple(shape))

    def representations(self, features):
        """The modality-specific representations, before masking: a list of M tensors [B, units]."""
        features = list(features)
        check_input_count("IntermediateFusion", self.num_modalities, len(features))
        return [block(x) for block, x in zip(self.blocks, features)]

    def call(self, features, presence=None):
        return keras.ops.concatenate(_masked(self.representations(features), presence), axis=-1)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.num_modalities * self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "num_modalities": self.num_modalities,
            "units": self.units,
            "depth": self.depth,
        }


@FUSIONS.register("weighted")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class WeightedSumFusion(ModalityWeights):
    """Weighted fusion `h = Σ_i w_i · W_i h_i`: project each modality to `units`, then sum.

    With modalities missing, the weights of the present ones are
    renormalised to sum to 1 (`w_i m_i / Σ_j w_j m_j`).

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

    takes_fixed_weights = True

    config_class = WeightedFusionConfig
    checks = (UNITS,)

    @classmethod
    def check_config(cls, options, fusion, config, where: str) -> None:
        check_fixed_weights(options, config, where)

    @classmethod
    def from_settings(cls, settings: FusionSettings, name: str):
        options = settings.options
        return cls(settings.num_modalities, units=options.units, modality_weights=options.weights, name=name)

    def __init__(self, num_modalities: int, units: int = 64, modality_weights: list[float] | None = None, **kwargs):
        super().__init__(num_modalities, modality_weights, **kwargs)
        if units < 1:
            raise ValueError(f"WeightedSumFusion: units must be positive, got {units}")
        self.units = units
        self.projections = [keras.layers.Dense(units, name=f"projection_{i}") for i in range(num_modalities)]

    def build(self, input_shapes):
        for projection, shape in zip(self.projections, input_shapes):
            projection.build(tuple(shape))

    def modality_weight_values(self, features, presence=None):
        """The weights used per example, [B, M] (renormalised over the present modalities)."""
        features = list(features)
        batch = keras.ops.shape(features[0])[0]
        weights = keras.ops.broadcast_to(self.weights_vector()[None, :], (batch, self.num_modalities))
        return renormalize(weights, presence)

    def call(self, features, presence=None):
        features = list(features)
        if len(features) != self.num_modalities:
            raise ValueError(f"WeightedSumFusion: expected {self.num_modalities} inputs, got {len(features)}")
        projected = keras.ops.stack([p(h) for p, h in zip(self.projections, features)], axis=1)
        return keras.ops.einsum("bmu,bm->bu", projected, self.modality_weight_values(features, presence))

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@FUSIONS.register("late")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class LateFusion(ModalityWeights):
    """Decision-level fusion: the weighted average `Σ_m w_m p_m` of per-modality predictions.

    With weights summing to 1, an average of probability vectors is again a
    probability vector. Missing modalities are left out and the weights of
    the present ones renormalised; an example with no modality at all gets
    the plain weighted average (there is nothing better to say about it).

    Args:
        num_modalities: M, the number of per-modality predictions.
        modality_weights: fixed weights, or None to learn softmax(logits).

    Example:
        >>> LateFusion(num_modalities=2, modality_weights=[1, 3])([keras.ops.zeros((1, 1)), keras.ops.ones((1, 1))])
        # -> [[0.75]]
    """

    is_decision_level = True

    takes_fixed_weights = True

    config_class = FixedWeightsConfig

    @classmethod
    def check_config(cls, options, fusion, config, where: str) -> None:
        check_fixed_weights(options, config, where)

    @classmethod
    def from_settings(cls, settings: FusionSettings, name: str):
        return cls(settings.num_modalities, modality_weights=settings.options.weights, name=name)

    def modality_weight_values(self, predictions, presence=None):
        """The weights used per example, [B, M]."""
        predictions = list(predictions)
        batch = keras.ops.shape(predictions[0])[0]
        weights = keras.ops.broadcast_to(self.weights_vector()[None, :], (batch, self.num_modalities))
        if presence is None:
            return weights
        some = keras.ops.max(presence, axis=-1, keepdims=True) > 0
        return keras.ops.where(some, renormalize(weights, presence), weights)

    def call(self, predictions, presence=None):
        predictions = list(predictions)
        if len(predictions) != self.num_modalities:
            raise ValueError(f"LateFusion: expected {self.num_modalities} inputs, got {len(predictions)}")
        stacked = keras.ops.stack(predictions, axis=1)
        return keras.ops.einsum("bm...,bm->b...", stacked, self.modality_weight_values(predictions, presence))

    def compute_output_shape(self, input_shapes):
        return tuple(input_shapes[0])
