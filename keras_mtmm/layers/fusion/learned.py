"""Fusion with learned, per-example weighting: `gated` (GMU), `attention`, and `low_rank` (LMF)."""

from __future__ import annotations

from dataclasses import dataclass

import keras

from keras_mtmm.config.bounds import positive
from keras_mtmm.config.one_of import exclusive
from keras_mtmm.layers.fusion.base import (
    UNITS,
    FusionSettings,
    ProjectedFusionConfig,
    check_input_count,
    check_positive_int,
    feature_width,
    masked_softmax,
    presence_column,
)
from keras_mtmm.registry import FUSIONS

# The rank `low_rank` fusion gets when none is given.
DEFAULT_RANK = 4


@FUSIONS.register("gated")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class GatedFusion(keras.layers.Layer):
    """Gated multimodal unit (Arevalo et al., "Gated Multimodal Units for Information Fusion", ICLR workshop 2017).

    Generalised to M modalities::

        h_i = tanh(W_i x_i + b_i)                 # each modality projected to `units`
        z   = W_z [m_1 x_1; ...; m_M x_M] + b_z   # gate logits, shape [B, M]; missing inputs read as zero
        g   = softmax(z) over the present modalities
        h   = Σ_i g_i · h_i

    The gates are per example and per modality (scalars, not per unit), and
    sum to 1 over the present modalities; for M = 2 this is the paper's
    sigmoid form `h = g·h_1 + (1 − g)·h_2` with `g = σ(z_1 − z_2)` (with a
    scalar gate). Because the gates depend on the example there is no
    `current_weights`; use `modality_weight_values(features, presence)`.

    Args:
        num_modalities: M, the number of inputs.
        units: the width of the projections and of the output.

    Example:
        >>> fusion = GatedFusion(num_modalities=2, units=8)
        >>> fusion([keras.ops.ones((2, 3)), keras.ops.ones((2, 5))]).shape
        (2, 8)
    """

    is_decision_level = False

    config_class = ProjectedFusionConfig
    checks = (UNITS,)

    @classmethod
    def from_settings(cls, settings: FusionSettings, name: str):
        return cls(settings.num_modalities, units=settings.options.units, name=name)

    def __init__(self, num_modalities: int, units: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.num_modalities = check_positive_int("GatedFusion", "num_modalities", num_modalities)
        self.units = check_positive_int("GatedFusion", "units", units)
        self.projections = [
            keras.layers.Dense(self.units, activation="tanh", name=f"projection_{i}")
            for i in range(self.num_modalities)
        ]
        # Zero-initialised gate logits: every present modality starts with the same weight, 1/M, so no
        # encoder is switched off (and starved of gradient) by a random initial preference.
        self.gate = keras.layers.Dense(self.num_modalities, kernel_initializer="zeros", name="gate")

    def build(self, input_shapes):
        input_shapes = list(input_shapes)
        check_input_count("GatedFusion", self.num_modalities, len(input_shapes))
        widths = [feature_width("GatedFusion", i, shape) for i, shape in enumerate(input_shapes)]
        for projection, shape in zip(self.projections, input_shapes):
            projection.build(tuple(shape))
        self.gate.build((input_shapes[0][0], sum(widths)))

    def _inputs(self, features, presence):
        features = list(features)
        check_input_count("GatedFusion", self.num_modalities, len(features))
        if presence is not None:
            features = [x * presence_column(presence, i, x.dtype) for i, x in enumerate(features)]
        return features

    def modality_weight_values(self, features, presence=None):
        """The gates, a tensor of shape [B, M] whose rows sum to 1 over the present modalities."""
        features = self._inputs(features, presence)
        return masked_softmax(self.gate(keras.ops.concatenate(features, axis=-1)), presence)

    def call(self, features, presence=None):
        gates = self.modality_weight_values(features, presence)
        features = self._inputs(features, presence)
        projected = keras.ops.stack([p(x) for p, x in zip(self.projections, features)], axis=1)
        return keras.ops.einsum("bmu,bm->bu", projected, gates)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.units)

    def get_config(self):
        return {**super().get_config(), "num_modalities": self.num_modalities, "units": self.units}


@dataclass
class AttentionFusionConfig(ProjectedFusionConfig):
    """`fusion.attention`: the width, and `per_task`: one attention per task (each its own modality weights)."""

    per_task: bool = exclusive(False)


@FUSIONS.register("attention")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class AttentionFusion(keras.layers.Layer):
    """Attention fusion over modalities (additive attention scores, as surveyed by Baltrušaitis et al., 2018).

    ::

        p_i = W_i x_i + b_i            # each modality projected to `units`
        s_i = vᵀ tanh(W_a p_i)         # W_a [units, units] and v [units] shared, no bias
        a   = softmax(s) over the present modalities (per example)
        h   = Σ_i a_i p_i

    Task-conditioned (`task_names` given): one score vector `v_t` per task,
    so each task weighs the modalities its own way, and the layer returns
    `{task: h_t}` (each task's sharing path then reads its own fused vector).

    Args:
        num_modalities: M, the number of inputs.
        units: the width of the projections and of the output.
        task_names: None for one shared fusion, or the tasks to condition on.

    Example:
        >>> fusion = AttentionFusion(num_modalities=2, units=8)
        >>> fusion([keras.ops.ones((2, 3)), keras.ops.ones((2, 5))]).shape
        (2, 8)
    """

    is_decision_level = False

    conditions_per_task = True

    config_class = AttentionFusionConfig
    checks = (UNITS,)

    @classmethod
    def from_settings(cls, settings: FusionSettings, name: str):
        options = settings.options
        task_names = settings.task_names if options.per_task else None
        return cls(settings.num_modalities, units=options.units, task_names=task_names, name=name)

    def __init__(self, num_modalities: int, units: int = 64, task_names: list[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.num_modalities = check_positive_int("AttentionFusion", "num_modalities", num_modalities)
        self.units = check_positive_int("AttentionFusion", "units", units)
        if task_names is not None:
            task_names = list(task_names)
            if not task_names or len(set(task_names)) != len(task_names):
                raise ValueError(f"AttentionFusion: task_names must be non-empty and unique, got {task_names}")
        self.task_names = task_names
        self.projections = [keras.layers.Dense(self.units, name=f"projection_{i}") for i in range(self.num_modalities)]
        self.attention = keras.layers.Dense(self.units, activation="tanh", use_bias=False, name="attention")
        self.score = keras.layers.Dense(len(task_names or [None]), use_bias=False, name="score")

    def build(self, input_shapes):
        input_shapes = list(input_shapes)
        check_input_count("AttentionFusion", self.num_modalities, len(input_shapes))
        for i, (projection, shape) in enumerate(zip(self.projections, input_shapes)):
            feature_width("AttentionFusion", i, shape)
            projection.build(tuple(shape))
        self.attention.build((input_shapes[0][0], self.units))
        self.score.build((input_shapes[0][0], self.units))

    def _project(self, features):
        features = list(features)
        check_input_count("AttentionFusion", self.num_modalities, len(features))
        return keras.ops.stack([p(x) for p, x in zip(self.projections, features)], axis=1)  # [B, M, U]

    def _weights(self, projected, presence):
        scores = self.score(self.attention(projected))  # [B, M, T]
        return masked_softmax(keras.ops.transpose(scores, (0, 2, 1)), presence)  # [B, T, M]

    def modality_weight_values(self, features, presence=None):
        """The attention weights, [B, M] (or `{task: [B, M]}` when task-conditioned); rows sum to 1."""
        weights = self._weights(self._project(features), presence)
        if self.task_names is None:
            return weights[:, 0, :]
        return {task: weights[:, t, :] for t, task in enumerate(self.task_names)}

    def call(self, features, presence=None):
        projected = self._project(features)
        fused = keras.ops.einsum("bmu,btm->btu", projected, self._weights(projected, presence))
        if self.task_names is None:
            return fused[:, 0, :]
        return {task: fused[:, t, :] for t, task in enumerate(self.task_names)}

    def compute_output_shape(self, input_shapes):
        shape = (input_shapes[0][0], self.units)
        return shape if self.task_names is None else {task: shape for task in self.task_names}

    def get_config(self):
        return {
            **super().get_config(),
            "num_modalities": self.num_modalities,
            "units": self.units,
            "task_names": self.task_names,
        }


@dataclass
class LowRankFusionConfig(ProjectedFusionConfig):
    """`fusion.low_rank`: the width and the rank of the factorised fusion tensor."""

    rank: int = DEFAULT_RANK


@FUSIONS.register("low_rank")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class LowRankFusion(keras.layers.Layer):
    """Low-rank multimodal fusion (Liu et al., "Efficient Low-rank Multimodal Fusion with Modality-Specific
    Factors", ACL 2018).

    A rank-`rank` factorisation of tensor fusion (the outer product of the
    1-appended modality vectors, Zadeh et al. 2017), computed without
    building the tensor::

        x̂_i = [x_i; 1]                                   # [B, d_i + 1]
        h   = Σ_r w_r · Π_i (x̂_i W_i^(r)) + b             # Π: elementwise over the present modalities

    with modality factors `W_i` of shape [rank, d_i + 1, units], rank weights
    `w` [rank] and bias `b` [units]. A missing modality's factor is left out
    of the product (its term is replaced by 1).

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

    config_class = LowRankFusionConfig
    checks = (UNITS, positive("rank", "4"))

    @classmethod
    def from_settings(cls, settings: FusionSettings, name: str):
        options = settings.options
        return cls(settings.num_modalities, units=options.units, rank=options.rank, name=name)

    def __init__(self, num_modalities: int, units: int = 64, rank: int = DEFAULT_RANK, **kwargs):
        super().__init__(**kwargs)
        self.num_modalities = check_positive_int("LowRankFusion", "num_modalities", num_modalities)
        self.units = check_positive_int("LowRankFusion", "units", units)
        self.rank = check_positive_int("LowRankFusion", "rank", rank)

    def build(self, input_shapes):
        input_shapes = list(input_shapes)
        check_input_count("LowRankFusion", self.num_modalities, len(input_shapes))
        self.factors = [
            self.add_weight(
                shape=(self.rank, feature_width("LowRankFusion", i, shape) + 1, self.units),
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

    def call(self, features, presence=None):
        features = list(features)
        check_input_count("LowRankFusion", self.num_modalities, len(features))
        product = None
        for i, (x, factor) in enumerate(zip(features, self.factors)):
            x = keras.ops.cast(x, self.compute_dtype)
            x_hat = keras.ops.concatenate([x, keras.ops.ones_like(x[:, :1])], axis=-1)
            term = keras.ops.einsum("bd,rdu->bru", x_hat, factor)
            if presence is not None:
                present = presence_column(presence, i, term.dtype)[:, :, None]  # [B, 1, 1]
                term = present * term + (1.0 - present)
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
