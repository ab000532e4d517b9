"""Cross-modal attention fusion over sequence-shaped encoder outputs (text tokens, image patches).

Each modality's tokens attend to the tokens of the other modalities before
pooling (the cross-modal attention of Tsai et al., "Multimodal Transformer
for Unaligned Multimodal Language Sequences", ACL 2019, with one
multi-head attention block per query modality)::

    t_i   = W_i x_i                                    # tokens of modality i, [B, N_i, units]
    c_i   = MHA_i(query=t_i, key=value=[t_j]_{j≠i})    # keys: present modalities' valid tokens only
    o_i   = LayerNorm(t_i + c_i)
    h_i   = mean of o_i over i's valid tokens          # [B, units]
    h     = [m_1 h_1; ...; m_M h_M]                    # [B, M · units], a missing modality's slot is zero

Vector-shaped inputs ([B, d], e.g. a numeric MLP's output) are one token.
Token validity comes from `token_masks` (text padding); a query with no
present key at all gets no cross-modal context (`c_i = 0`).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from keras_mtmm.config.bounds import positive
from keras_mtmm.errors import ConfigError
from keras_mtmm.layers.fusion.base import (
    UNITS,
    FusionSettings,
    ProjectedFusionConfig,
    check_input_count,
    check_positive_int,
    presence_column,
)
from keras_mtmm.registry import FUSIONS


@keras.saving.register_keras_serializable(package="keras_mtmm")
class TokenMask(keras.layers.Layer):
    """The validity mask [B, N] of a modality's tokens, float 0/1.

    `from_ids=True`: from token ids (0 = padding); otherwise every token of
    the given sequence (or the single token of a vector) is valid.
    """

    def __init__(self, from_ids: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.from_ids = bool(from_ids)

    def call(self, inputs):
        if self.from_ids:
            return keras.ops.cast(keras.ops.not_equal(inputs, 0), "float32")
        shape = keras.ops.shape(inputs)
        length = 1 if len(inputs.shape) == 2 else shape[1]
        return keras.ops.ones((shape[0], length), dtype="float32")

    def compute_output_shape(self, input_shape):
        if self.from_ids:
            return tuple(input_shape)
        return (input_shape[0], 1 if len(input_shape) == 2 else input_shape[1])

    def get_config(self):
        return {**super().get_config(), "from_ids": self.from_ids}


def _as_sequence(x):
    return x[:, None, :] if len(x.shape) == 2 else x


@dataclass
class CrossAttentionFusionConfig(ProjectedFusionConfig):
    """`fusion.cross_attention`: the width and the attention heads."""

    num_heads: int = 2


@FUSIONS.register("cross_attention")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class CrossAttentionFusion(keras.layers.Layer):
    """Cross-modal attention: every modality's tokens attend to the other modalities' tokens, then pool.

    Args:
        num_modalities: M (at least 2: a modality needs another to attend to).
        units: the token width after projection, and the width of each pooled slot.
        num_heads: attention heads (`units // num_heads` per head).

    Call:
        `fusion(features, presence=None, token_masks=None)`: `features` are
        M tensors [B, N_i, d_i] or [B, d_i]; `token_masks` M tensors [B, N_i]
        (1 = a real token), or None for all valid.

    Example:
        >>> fusion = CrossAttentionFusion(num_modalities=2, units=8, num_heads=2)
        >>> fusion([keras.ops.ones((2, 5, 3)), keras.ops.ones((2, 4))]).shape
        (2, 16)
    """

    is_decision_level = False
    takes_sequences = True

    config_class = CrossAttentionFusionConfig
    checks = (UNITS, positive("num_heads", "2"))

    @classmethod
    def check_config(cls, options, fusion, config, where: str) -> None:
        """Two or more modalities, and the heads fit in the width."""
        if len(config.modalities) < 2:
            raise ConfigError(
                "fusion.strategy", "cross_attention needs at least 2 modalities", "add a modality or use early"
            )
        if options.units < options.num_heads:
            raise ConfigError(
                f"{where}.num_heads",
                f"{options.num_heads} heads do not fit in fusion.units = {options.units}",
                "use fewer heads or more units",
            )

    @classmethod
    def from_settings(cls, settings: FusionSettings, name: str):
        options = settings.options
        return cls(settings.num_modalities, units=options.units, num_heads=options.num_heads, name=name)

    def __init__(self, num_modalities: int, units: int = 64, num_heads: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.num_modalities = check_positive_int("CrossAttentionFusion", "num_modalities", num_modalities)
        if self.num_modalities < 2:
            raise ValueError("CrossAttentionFusion: needs at least 2 modalities (one attends to the others)")
        self.units = check_positive_int("CrossAttentionFusion", "units", units)
        self.num_heads = check_positive_int("CrossAttentionFusion", "num_heads", num_heads)
        if self.units < self.num_heads:
            raise ValueError(f"CrossAttentionFusion: units ({units}) must be at least num_heads ({num_heads})")
        key_dim = self.units // self.num_heads
        self.projections = [keras.layers.Dense(self.units, name=f"projection_{i}") for i in range(num_modalities)]
        self.attentions = [
            keras.layers.MultiHeadAttention(self.num_heads, key_dim, name=f"attention_{i}")
            for i in range(num_modalities)
        ]
        self.norms = [keras.layers.LayerNormalization(name=f"norm_{i}") for i in range(num_modalities)]

    def build(self, input_shapes):
        input_shapes = [tuple(shape) for shape in input_shapes]
        check_input_count("CrossAttentionFusion", self.num_modalities, len(input_shapes))
        for i, shape in enumerate(input_shapes):
            if len(shape) not in (2, 3) or shape[-1] is None:
                raise ValueError(
                    f"CrossAttentionFusion: input {i} must be [batch, tokens, width] or [batch, width], got {shape}"
                )
            token_shape = (shape[0], 1 if len(shape) == 2 else shape[1], shape[-1])
            self.projections[i].build(token_shape)
            projected = (shape[0], token_shape[1], self.units)
            self.attentions[i].build(projected, (shape[0], None, self.units))
            self.norms[i].build(projected)

    def _tokens(self, features, presence, token_masks):
        features = list(features)
        check_input_count("CrossAttentionFusion", self.num_modalities, len(features))
        tokens = [p(_as_sequence(x)) for p, x in zip(self.projections, features)]
        masks = []
        for i, t in enumerate(tokens):
            mask = token_masks[i] if token_masks is not None else None
            if mask is None:
                mask = keras.ops.ones(keras.ops.shape(t)[:2], dtype=t.dtype)
            mask = keras.ops.cast(mask, t.dtype)
            if presence is not None:
                mask = mask * presence_column(presence, i, t.dtype)
            masks.append(mask)
        return tokens, masks

    def _context(self, i, tokens, masks, return_scores=False):
        """Modality i's attention over the other modalities' tokens: (context, has_key[, scores])."""
        keys = keras.ops.concatenate([t for j, t in enumerate(tokens) if j != i], axis=1)
        key_mask = keras.ops.concatenate([m for j, m in enumerate(masks) if j != i], axis=1)  # [B, S]
        query_length = keras.ops.shape(tokens[i])[1]
        attention_mask = keras.ops.repeat(key_mask[:, None, :] > 0, query_length, axis=1)  # [B, N_i, S]
        result = self.attentions[i](
            tokens[i], keys, attention_mask=attention_mask, return_attention_scores=return_scores
        )
        has_key = keras.ops.cast(keras.ops.max(key_mask, axis=1) > 0, tokens[i].dtype)[:, None, None]
        if return_scores:
            context, scores = result
            return context * has_key, has_key, scores
        return result * has_key, has_key

    def call(self, features, presence=None, token_masks=None):
        tokens, masks = self._tokens(features, presence, token_masks)
        pooled = []
        for i in range(self.num_modalities):
            context, _ = self._context(i, tokens, masks)
            out = self.norms[i](tokens[i] + context)
            weights = masks[i][:, :, None]
            total = keras.ops.sum(out * weights, axis=1)
            pooled.append(total / keras.ops.maximum(keras.ops.sum(weights, axis=1), 1.0))  # zero if missing
        return keras.ops.concatenate(pooled, axis=-1)

    def modality_attention(self, features, presence=None, token_masks=None):
        """Per query modality, the attention mass each other modality receives: [B, M, M] (rows sum to 1).

        Averaged over heads and over the query modality's valid tokens; a row
        is zero where the query modality is missing or has no key.
        """
        tokens, masks = self._tokens(features, presence, token_masks)
        lengths = [int(t.shape[1]) for t in tokens]  # static: sequence lengths are fixed
        rows = []
        for i in range(self.num_modalities):
            _, has_key, scores = self._context(i, tokens, masks, return_scores=True)  # scores [B, H, N_i, S]
            per_key = keras.ops.mean(scores, axis=1)  # [B, N_i, S]
            query_mask = masks[i][:, :, None]
            per_key = keras.ops.sum(per_key * query_mask, axis=1) / keras.ops.maximum(
                keras.ops.sum(query_mask, axis=1), 1.0
            )  # [B, S]
            per_key = per_key * has_key[:, 0, :]
            columns, start = [], 0
            for j in range(self.num_modalities):
                if j == i:
                    columns.append(keras.ops.zeros_like(per_key[:, :1]))
                    continue
                columns.append(keras.ops.sum(per_key[:, start : start + lengths[j]], axis=1, keepdims=True))
                start = start + lengths[j]
            rows.append(keras.ops.concatenate(columns, axis=1))
        return keras.ops.stack(rows, axis=1)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.num_modalities * self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "num_modalities": self.num_modalities,
            "units": self.units,
            "num_heads": self.num_heads,
        }
