"""Task weighting strategies: how the task losses are combined, `L = Σ_i w_i L_i`.

One file per strategy, each a Keras layer (its state is saved with the model):

- loss-only, through the model's `compute_loss`: `static`, `inverse_size`,
  `uncertainty`, `dwa`, `rlw`, `famo`;
- gradient-based, through the model's `train_step`: `pcgrad`, `cagrad`,
  `mgda`, `gradnorm`, `graddrop`, `gradvac`, `db_mtl`, `nash_mtl`, `imtl`, `upgrad`,
  `aligned_mtl`.

`build_weighting` unpacks the config into one of them.
"""

from __future__ import annotations

from keras_mtmm.weighting import aggregators
from keras_mtmm.weighting.aligned_mtl import AlignedMTL
from keras_mtmm.weighting.base import WeightingStrategy
from keras_mtmm.weighting.cagrad import CAGrad
from keras_mtmm.weighting.db_mtl import DBMTL
from keras_mtmm.weighting.dwa import DynamicWeightAverage
from keras_mtmm.weighting.famo import FAMO
from keras_mtmm.weighting.graddrop import GradDrop
from keras_mtmm.weighting.gradnorm import GradNorm
from keras_mtmm.weighting.gradvac import GradVac
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
    "DBMTL",
    "DynamicWeightAverage",
    "FAMO",
    "GradDrop",
    "GradNorm",
    "GradVac",
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


def build_weighting(
    weighting, task_types: dict[str, str], base_weights: dict[str, float], seed: int, num_parameters: int = 0
):
    """Build the weighting layer a `WeightingConfig` names.

    Args:
        weighting: the `WeightingConfig`.
        task_types: task name -> task type, in task order.
        base_weights: the resolved w_i (configured, or inverse_size's).
        seed: the experiment seed (random strategies).
        num_parameters: the network's trainable parameter count (sizes the
            per-parameter state of `db_mtl`).
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
    if strategy == "graddrop":
        return GradDrop(names, weights, leak=weighting.graddrop_leak, seed=seed, name="weighting")
    if strategy == "gradvac":
        return GradVac(names, weights, beta=weighting.gradvac_beta, seed=seed, name="weighting")
    if strategy == "db_mtl":
        return DBMTL(
            names,
            num_parameters,
            weights,
            beta=weighting.db_mtl_beta,
            beta_sigma=weighting.db_mtl_beta_sigma,
            name="weighting",
        )
    if strategy == "famo":
        return FAMO(
            names,
            weights,
            learning_rate=weighting.famo_learning_rate,
            gamma=weighting.famo_gamma,
            update=weighting.famo_update,
            name="weighting",
        )
    raise ValueError(f"no builder for weighting strategy {strategy!r}")
