"""Task weighting strategies: how the task losses are combined, `L = Σ_i w_i L_i`.

One file per strategy, each a Keras layer (its state is saved with the model):

- loss-only, through the model's `compute_loss`: `static`, `inverse_size`,
  `uncertainty`, `dwa`, `rlw`;
- gradient-based, through the model's `train_step`: `pcgrad`, `cagrad`,
  `mgda`, `gradnorm`, `nash_mtl`, `imtl`, `upgrad`, `aligned_mtl`.

`build_weighting` unpacks the config into one of them.
"""

from __future__ import annotations

from keras_mtmm.weighting import aggregators
from keras_mtmm.weighting.aligned_mtl import AlignedMTL
from keras_mtmm.weighting.base import WeightingStrategy
from keras_mtmm.weighting.cagrad import CAGrad
from keras_mtmm.weighting.dwa import DynamicWeightAverage
from keras_mtmm.weighting.gradnorm import GradNorm
from keras_mtmm.weighting.imtl import IMTL
from keras_mtmm.weighting.mgda import MGDA
from keras_mtmm.weighting.nash_mtl import NashMTL
from keras_mtmm.weighting.pcgrad import PCGrad
from keras_mtmm.weighting.rlw import RandomLossWeighting
from keras_mtmm.weighting.static import StaticWeighting, resolve_task_weights
from keras_mtmm.weighting.uncertainty import UncertaintyWeighting
from keras_mtmm.weighting.upgrad import UPGrad

__all__ = [
    "AlignedMTL",
    "CAGrad",
    "DynamicWeightAverage",
    "GradNorm",
    "IMTL",
    "MGDA",
    "NashMTL",
    "PCGrad",
    "RandomLossWeighting",
    "StaticWeighting",
    "UncertaintyWeighting",
    "UPGrad",
    "WeightingStrategy",
    "aggregators",
    "build_weighting",
    "resolve_task_weights",
]


def build_weighting(weighting, task_types: dict[str, str], base_weights: dict[str, float], seed: int):
    """Build the weighting layer a `WeightingConfig` names.

    Args:
        weighting: the `WeightingConfig`.
        task_types: task name -> task type, in task order.
        base_weights: the resolved w_i (configured, or inverse_size's).
        seed: the experiment seed (random strategies).
    """
    names = list(task_types)
    weights = [base_weights[task] for task in names]
    strategy = weighting.strategy
    if strategy in ("static", "inverse_size"):
        return StaticWeighting(names, weights, name="weighting")
    if strategy == "uncertainty":
        return UncertaintyWeighting(names, [task_types[t] == "regression" for t in names], name="weighting")
    if strategy == "dwa":
        return DynamicWeightAverage(names, temperature=weighting.temperature, name="weighting")
    if strategy == "rlw":
        return RandomLossWeighting(names, seed=seed, name="weighting")
    if strategy == "pcgrad":
        return PCGrad(names, weights, seed=seed, name="weighting")
    if strategy == "cagrad":
        return CAGrad(names, weights, c=weighting.cagrad_c, name="weighting")
    if strategy == "mgda":
        return MGDA(names, weights, name="weighting")
    if strategy == "nash_mtl":
        return NashMTL(names, weights, name="weighting")
    if strategy == "imtl":
        return IMTL(names, weights, name="weighting")
    if strategy == "upgrad":
        return UPGrad(names, weights, name="weighting")
    if strategy == "aligned_mtl":
        return AlignedMTL(names, weights, name="weighting")
    if strategy == "gradnorm":
        return GradNorm(
            names, weights, alpha=weighting.alpha, learning_rate=weighting.gradnorm_learning_rate, name="weighting"
        )
    raise ValueError(f"no builder for weighting strategy {strategy!r}")
