"""DSelect-k: MMoE's experts, each task's gate a differentiable choice of at most k of them.

Hazimeh, Zhao, Chowdhery, Sathiamoorthy, Chen, Mazumder, Hong, Chi,
"DSelect-k: Differentiable Selection in the Mixture of Experts with
Applications to Multi-Task Learning", NeurIPS 2021 (the authors' TF code:
google-research/google-research, `dselect_k_moe`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import keras
import numpy as np

from keras_mtmm.config.bounds import Bound
from keras_mtmm.config.one_of import exclusive
from keras_mtmm.errors import ConfigError
from keras_mtmm.layers.sharing.mmoe import EXPERT_WIDTHS, MMoE, check_count
from keras_mtmm.registry import SHARINGS

# Inside the entropy's logarithm, as in the authors' code: log(r + EPSILON) is finite at r = 0.
EPSILON = 1e-6


def smooth_step(x, gamma: float):
    """The cubic smooth-step of the paper's Eq. (4): 0 for x <= -γ/2, 1 for x >= γ/2, in between
    `-2x³/γ³ + 3x/(2γ) + 1/2` (continuously differentiable; its slope is 0 at ±γ/2, so a saturated
    step gets no gradient and stays exactly 0 or 1)."""
    x = keras.ops.convert_to_tensor(x)
    cubic = -2.0 / gamma**3 * x**3 + 3.0 / (2.0 * gamma) * x + 0.5
    upper = keras.ops.where(x >= gamma / 2, keras.ops.ones_like(x), cubic)
    return keras.ops.where(x <= -gamma / 2, keras.ops.zeros_like(x), upper)


def binary_codes(num_experts: int) -> np.ndarray:
    """`[E, ceil(log2 E)]` 0/1 rows: row e is e in binary, most significant bit first."""
    width = math.ceil(math.log2(num_experts))
    return np.array([[int(bit) for bit in np.binary_repr(e, width=width)] for e in range(num_experts)], np.float32)


def selector_outputs(z, codes, gamma: float):
    """Single-expert selectors `r(z)`: `[..., m]` logits -> `[..., E]` weights.

    `r_e = Π_j (s_j if code_ej else 1 − s_j)` with `s = smooth_step(z)`. Over all 2^m codes the
    weights sum to 1; with E < 2^m the unreachable codes' mass is lost (the layer's reachability
    penalty drives it to 0). When every s_j is 0 or 1, r is exactly one-hot.
    """
    steps = keras.ops.expand_dims(smooth_step(z, gamma), -2)  # [..., 1, m]
    codes = keras.ops.convert_to_tensor(codes, dtype=steps.dtype)
    return keras.ops.prod(codes * steps + (1.0 - codes) * (1.0 - steps), axis=-1)


@dataclass
class DSelectKConfig:
    """`sharing.dselect_k`: MMoE's experts, and each gate's selection (`dselect_*`: this type's only)."""

    num_experts: int = 4
    expert_units: list[int] = field(default_factory=lambda: [64])
    dselect_k: int = exclusive(2)
    dselect_gamma: float = exclusive(1.0)
    dselect_entropy_weight: float = exclusive(0.1)
    dselect_per_example: bool = exclusive(False)


@SHARINGS.register("dselect_k")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class DSelectK(MMoE):
    """MMoE with DSelect-k gates: each task's gate is a convex combination of at most k experts.

    The experts and towers are MMoE's. Task t has k single-expert selectors,
    each a binary code of m = ceil(log2 E) smooth-steps of its logits z_{t,i}
    (`selector_outputs`), and mixes them with `softmax(w_t)` over the k:
    `g_t = Σ_i softmax(w_t)_i · r(z_{t,i})`. Once every smooth-step is
    saturated at 0 or 1, each selector picks exactly one expert, so g_t has at
    most k non-zeros; saturated steps have zero slope and stay put.

    Static gates (`per_example=False`, the default) are the paper's
    multi-task setting: z and w are learned per task and do not depend on the
    example, so each task ends up with one fixed set of at most k experts
    (`selected_experts`). `per_example=True` is the authors' code's example
    conditioning: z and w are linear in the input (one Dense per task).

    While training, the layer adds (`add_loss`):

    - `entropy_weight · Σ_{t,i} H(r(z_{t,i}))`, `H(r) = −Σ_e r_e log(r_e + 1e-6)`:
      the paper's entropy regulariser (its Sec. 4; the authors' `entropy_reg`),
      which pulls every selector to one expert, i.e. the steps to 0/1;
    - when E is not a power of 2, `Σ_{t,i} (1/Σ_e r_e − 1)`, the authors'
      penalty that keeps selectors off the 2^m − E unreachable codes (less 1,
      so that it is 0, not a constant, once all mass is on real experts).

    Per-example gates average both over the batch (the authors sum over it).
    Initialisation as the authors': z (and a per-example z's kernel and bias)
    uniform in ±γ/100, w in ±0.05.

    Args:
        task_names: the tasks, in order; the output dict is keyed by them.
        num_experts: E (>= 2).
        num_selected: k, the most experts a task's gate mixes (1 <= k <= E).
        expert_units: widths of each expert's Dense layers (>= 1 layer).
        tower_units: widths of each task tower's Dense layers.
        gamma: γ > 0, the width of the smooth-step's cubic region.
        entropy_weight: the entropy regulariser's weight (>= 0).
        per_example: condition the gates on the input (see above).
        dropout, activation: as MMoE's.

    Example:
        >>> layer = DSelectK(["a", "b"], num_experts=4, num_selected=2, expert_units=[16], tower_units=[8])
        >>> {k: tuple(v.shape) for k, v in layer(keras.ops.ones((2, 10))).items()}
        {'a': (2, 8), 'b': (2, 8)}
        >>> sorted(layer.selected_experts())
        ['a', 'b']
    """

    config_class = DSelectKConfig
    checks = (
        EXPERT_WIDTHS,
        Bound("dselect_gamma", "> 0", lambda gamma: gamma > 0, "1.0"),
        Bound("dselect_entropy_weight", ">= 0", lambda weight: weight >= 0, "0.1"),
    )

    @classmethod
    def check_config(cls, options: DSelectKConfig, sharing, config, where: str) -> None:
        """A choice among 2 or more experts, of 1 to all of them."""
        if options.num_experts < 2:
            raise ConfigError(
                f"{where}.num_experts",
                f"DSelect-k selects among 2 or more experts, got {options.num_experts}",
                "e.g. 4",
            )
        if not 1 <= options.dselect_k <= options.num_experts:
            raise ConfigError(
                f"{where}.dselect_k",
                f"expected 1 to num_experts ({options.num_experts}) experts per task, got {options.dselect_k}",
                "e.g. 2",
            )

    @classmethod
    def from_settings(cls, sharing, task_names: list[str], name: str):
        """The layer a `SharingConfig` (`sharing`) describes. (Keras' `from_config` is deserialization.)"""
        options = sharing.get()
        return cls(
            task_names,
            num_experts=options.num_experts,
            num_selected=options.dselect_k,
            expert_units=options.expert_units,
            tower_units=sharing.tower_units,
            gamma=options.dselect_gamma,
            entropy_weight=options.dselect_entropy_weight,
            per_example=options.dselect_per_example,
            dropout=sharing.dropout,
            activation=sharing.activation,
            name=name,
        )

    def __init__(
        self,
        task_names: list[str],
        num_experts: int,
        num_selected: int,
        expert_units: list[int],
        tower_units: list[int],
        gamma: float = 1.0,
        entropy_weight: float = 0.1,
        per_example: bool = False,
        dropout: float = 0.0,
        activation: str = "relu",
        **kwargs,
    ):
        check_count("DSelectK", "num_experts", num_experts, 2)
        super().__init__(task_names, num_experts, expert_units, tower_units, dropout, activation, **kwargs)
        self.num_selected = check_count("DSelectK", "num_selected", num_selected, 1)
        if self.num_selected > self.num_experts:
            raise ValueError(f"DSelectK: num_selected must be <= num_experts ({num_experts}), got {num_selected}")
        if not (isinstance(gamma, (int, float)) and gamma > 0):
            raise ValueError(f"DSelectK: gamma must be > 0, got {gamma!r}")
        if not (isinstance(entropy_weight, (int, float)) and entropy_weight >= 0):
            raise ValueError(f"DSelectK: entropy_weight must be >= 0, got {entropy_weight!r}")
        self.gamma = float(gamma)
        self.entropy_weight = float(entropy_weight)
        self.per_example = bool(per_example)
        self.codes = binary_codes(self.num_experts)

    def _build_gates(self, input_dim: int) -> None:
        tasks, k, m = len(self.task_names), self.num_selected, self.codes.shape[1]
        z_init = keras.initializers.RandomUniform(-self.gamma / 100, self.gamma / 100)
        w_init = keras.initializers.RandomUniform(-0.05, 0.05)
        if self.per_example:
            self.z_kernel = self.add_weight(name="z_kernel", shape=(tasks, input_dim, k, m), initializer=z_init)
            self.z_bias = self.add_weight(name="z_bias", shape=(tasks, k, m), initializer=z_init)
            self.w_kernel = self.add_weight(name="w_kernel", shape=(tasks, input_dim, k), initializer=w_init)
            self.w_bias = self.add_weight(name="w_bias", shape=(tasks, k), initializer=w_init)
        else:
            self.z_logits = self.add_weight(name="z_logits", shape=(tasks, k, m), initializer=z_init)
            self.w_logits = self.add_weight(name="w_logits", shape=(tasks, k), initializer=w_init)

    def _selectors(self, inputs):
        """(selector outputs `[(batch,) T, k, E]`, their mixing weights `[(batch,) T, k]`)."""
        if self.per_example:
            z = keras.ops.einsum("bi,tikm->btkm", inputs, self.z_kernel) + self.z_bias
            w = keras.ops.einsum("bi,tik->btk", inputs, self.w_kernel) + self.w_bias
        else:
            z, w = self.z_logits, self.w_logits
        return selector_outputs(z, self.codes, self.gamma), keras.ops.softmax(w, axis=-1)

    def _mix(self, selectors, weights):
        return keras.ops.sum(keras.ops.expand_dims(weights, -1) * selectors, axis=-2)

    def _gates(self, inputs):
        """All task gates, `[batch, T, E]` (static gates repeated over the batch)."""
        gates = self._mix(*self._selectors(inputs))
        if self.per_example:
            return gates
        return keras.ops.broadcast_to(gates, (keras.ops.shape(inputs)[0], *gates.shape))

    def selector_losses(self, selectors):
        """(the weighted entropy term, the reachability penalty) of selector outputs, as `call` adds them."""
        entropy = -keras.ops.sum(selectors * keras.ops.log(selectors + EPSILON), axis=(-3, -2, -1))
        reachability = keras.ops.sum(1.0 / keras.ops.sum(selectors, axis=-1) - 1.0, axis=(-2, -1))
        if self.per_example:
            entropy, reachability = keras.ops.mean(entropy), keras.ops.mean(reachability)
        if self.num_experts == 2 ** self.codes.shape[1]:
            reachability = keras.ops.zeros_like(reachability)  # every code is an expert: nothing to penalise
        return self.entropy_weight * entropy, reachability

    def call(self, inputs, training=None):
        selectors, weights = self._selectors(inputs)
        if training:
            entropy, reachability = self.selector_losses(selectors)
            self.add_loss(entropy + reachability)
        gates = self._mix(selectors, weights)
        experts = self._experts(inputs, training=training)
        equation = "bte,bed->btd" if self.per_example else "te,bed->btd"
        mixtures = keras.ops.einsum(equation, gates, experts)
        return {
            task: self.towers[task](mixtures[:, index, :], training=training)
            for index, task in enumerate(self.task_names)
        }

    def selected_experts(self, threshold: float = 1e-3) -> dict:
        """Per task, the experts its static gate uses: `{task: {"experts": {name: weight}, "saturated": bool}}`.

        `experts`: those with gate weight above `threshold`; `saturated`: every
        smooth-step is exactly 0 or 1, so the listed experts are the whole of
        the gate (at most k). {} for per-example gates (their experts vary
        with the example: see `gate_weights` on data).
        """
        if self.per_example:
            return {}
        if not self.built:
            raise ValueError("DSelectK: selected_experts needs a built layer (call it on data first)")
        gates = keras.ops.convert_to_numpy(self._mix(*self._selectors(None)))
        steps = keras.ops.convert_to_numpy(smooth_step(self.z_logits, self.gamma))
        summary = {}
        for index, task in enumerate(self.task_names):
            names = self.expert_names(task)
            used = {names[e]: float(gates[index, e]) for e in range(self.num_experts) if gates[index, e] > threshold}
            saturated = bool(np.all((steps[index] == 0.0) | (steps[index] == 1.0)))
            summary[task] = {"experts": used, "saturated": saturated}
        return summary

    def get_config(self):
        return {
            **super().get_config(),
            "num_selected": self.num_selected,
            "gamma": self.gamma,
            "entropy_weight": self.entropy_weight,
            "per_example": self.per_example,
        }
