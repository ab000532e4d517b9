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

from keras_mtmm.registry import WEIGHTINGS
from keras_mtmm.weighting import aggregators
from keras_mtmm.weighting.aligned_mtl import AlignedMTL
from keras_mtmm.weighting.base import WeightingContext, WeightingStrategy
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
    "WeightingContext",
    "WeightingStrategy",
    "aggregators",
    "build_weighting",
    "gradient_strategies",
    "resolve_task_weights",
]


def build_weighting(
    weighting, task_types: dict[str, str], base_weights: dict[str, float], seed: int, num_parameters: int = 0
):
    """Build the weighting layer a `WeightingConfig` names: its registered class's `from_settings`.

    Args:
        weighting: the `WeightingConfig`.
        task_types: task name -> task type, in task order.
        base_weights: the resolved w_i (configured, or inverse_size's).
        seed: the experiment seed (random strategies).
        num_parameters: the network's trainable parameter count (sizes the
            per-parameter state of `db_mtl`).
    """
    names = list(task_types)
    context = WeightingContext(names, [base_weights[task] for task in names], dict(task_types), seed, num_parameters)
    return WEIGHTINGS.get(weighting.strategy, "weighting.strategy").from_settings(weighting, context)


def gradient_strategies() -> list[str]:
    """The registered strategies that combine per-task gradients (`uses_gradients`), sorted."""
    return WEIGHTINGS.names_with("uses_gradients")
