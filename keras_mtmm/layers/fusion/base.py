"""What every fusion layer shares: argument checks, presence masking, and modality dropout.

Presence: every fusion layer's `call(features, presence=None)` takes the
`modality_presence` tensor (float32 [B, M], 1 = present) the Preprocessor
makes. A missing modality is left out, never read: weights renormalise over
the present modalities, softmax scores are masked before normalising,
concatenated slots are zero. With `presence=None` every modality counts as
present.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from keras_mtmm.config.bounds import positive
from keras_mtmm.config.one_of import exclusive
from keras_mtmm.errors import ConfigError


@dataclass(frozen=True)
class FusionSettings:
    """What a fusion strategy's `from_settings` builds from: the modality count, the strategy's own
    sub-config (`options`, e.g. `ProjectedFusionConfig`) and the tasks (which a per-task strategy
    conditions on)."""

    num_modalities: int
    options: object
    task_names: list | None = None


@dataclass
class ProjectedFusionConfig:
    """`fusion.<strategy>` of a strategy that projects each modality to `units` first."""

    units: int = 64


@dataclass
class FixedWeightsConfig:
    """`fusion.late`: fixed modality weights in modality order (null: learned)."""

    weights: list[float] | None = exclusive(None)


@dataclass
class WeightedFusionConfig(ProjectedFusionConfig, FixedWeightsConfig):
    """`fusion.weighted`: the projection width, and fixed modality weights (null: learned)."""


UNITS = positive("units", "64")


def check_fixed_weights(options, config, where: str) -> None:
    """Fixed modality weights: one per modality, non-negative, with a positive sum."""
    weights = options.weights
    if weights is None:
        return
    if len(weights) != len(config.modalities):
        raise ConfigError(
            f"{where}.weights",
            f"expected {len(config.modalities)} weights (one per modality), got {len(weights)}",
            f"list one weight per modality in order: {', '.join(config.modalities)}",
        )
    if any(weight < 0 for weight in weights) or sum(weights) <= 0:
        raise ConfigError(f"{where}.weights", "expected non-negative weights with a positive sum", "fix them")


# Added to the score of a missing modality before a softmax: exp(-1e9) is 0 in float32.
MASKED_SCORE = -1e9


def check_positive_int(owner: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return int(value)


def check_input_count(owner: str, expected: int, got: int) -> None:
    if got != expected:
        raise ValueError(f"{owner}: expected {expected} inputs (num_modalities), got {got}")


def feature_width(owner: str, index: int, shape) -> int:
    shape = tuple(shape)
    if len(shape) != 2 or shape[-1] is None:
        raise ValueError(f"{owner}: input {index} must have shape [batch, width] with a known width, got {shape}")
    return int(shape[-1])


def normalized(weights: list[float] | None) -> list[float] | None:
    if weights is None:
        return None
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise ValueError(f"modality_weights must be non-negative with a positive sum, got {weights}")
    return [float(w) / total for w in weights]


def presence_column(presence, index: int, dtype):
    """Modality `index`'s presence as [B, 1] (for broadcasting over features)."""
    return keras.ops.cast(presence[:, index : index + 1], dtype)


def renormalize(weights, presence):
    """`w_i m_i / Σ_j w_j m_j` per example, [B, M]; all zero for an example with no modality present.

    Args:
        weights: [M] or [B, M], non-negative.
        presence: [B, M] of 0/1, or None (all present).
    """
    if presence is None:
        return weights
    presence = keras.ops.cast(presence, weights.dtype)
    masked = weights * presence
    total = keras.ops.sum(masked, axis=-1, keepdims=True)
    return masked / keras.ops.maximum(total, keras.backend.epsilon())


def masked_softmax(scores, presence):
    """softmax over the last axis (modalities) among present ones; all zero where none is present.

    Args:
        scores: [B, M] or [B, T, M].
        presence: [B, M] of 0/1, or None.
    """
    if presence is None:
        return keras.ops.softmax(scores, axis=-1)
    presence = keras.ops.cast(presence, scores.dtype)
    if len(scores.shape) == 3:
        presence = presence[:, None, :]
    weights = keras.ops.softmax(scores + (1.0 - presence) * MASKED_SCORE, axis=-1)
    return weights * presence


def any_present(presence, dtype):
    """[B, 1]: 1 where the example has at least one modality."""
    return keras.ops.cast(keras.ops.max(presence, axis=-1, keepdims=True) > 0, dtype)


class ModalityWeights(keras.layers.Layer):
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
        self._fixed = normalized(self.modality_weights)
        if self._fixed is None:
            self.logits = self.add_weight(
                shape=(num_modalities,), initializer="zeros", trainable=True, name="modality_logits"
            )

    def weights_vector(self):
        """The weights with every modality present, as a tensor of shape [M] that sums to 1."""
        if self._fixed is not None:
            return keras.ops.convert_to_tensor(self._fixed, dtype=self.compute_dtype)
        return keras.ops.softmax(self.logits)

    def current_weights(self) -> np.ndarray:
        """The weights with every modality present, as NumPy (for reports)."""
        return np.asarray(keras.ops.convert_to_numpy(self.weights_vector()))

    def get_config(self):
        return {
            **super().get_config(),
            "num_modalities": self.num_modalities,
            "modality_weights": self.modality_weights,
        }


@keras.saving.register_keras_serializable(package="keras_mtmm")
class ModalityDropout(keras.layers.Layer):
    """ModDrop (Neverova et al., 2015): while training, mark each modality missing with its own rate.

    Acts on the presence tensor [B, M], so the fusion layer leaves the
    dropped modality out exactly as it does a modality missing at serving
    time. An example never loses all its modalities: where every present one
    would be dropped, it keeps them all. At inference it is the identity.

    Args:
        rates: per modality (in modality order), the probability of dropping it.
        seed: the seed of the drop pattern.
    """

    def __init__(self, rates: list[float], seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        rates = [float(r) for r in rates]
        if not rates or any(not 0.0 <= r < 1.0 for r in rates):
            raise ValueError(f"ModalityDropout: rates must be in [0, 1), got {rates}")
        self.rates = rates
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, presence, training=None):
        if not training:
            return presence
        rates = keras.ops.convert_to_tensor(self.rates, dtype=presence.dtype)
        draws = keras.random.uniform(keras.ops.shape(presence), seed=self.seed_generator, dtype=presence.dtype)
        dropped = presence * keras.ops.cast(draws >= rates, presence.dtype)
        kept_some = keras.ops.sum(dropped, axis=-1, keepdims=True) > 0
        return keras.ops.where(kept_some, dropped, presence)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "rates": self.rates, "seed": self.seed}
