"""Task weighting strategies: how the task losses are combined, `L = Σ_i w_i L_i`.

Each strategy is one file. The spine's strategies fix the weights before
training and pass them to Keras as `compile(loss_weights=...)`.
"""

from keras_mtmm.weighting.static import InverseSizeWeighting, StaticWeighting, resolve_task_weights

__all__ = ["InverseSizeWeighting", "StaticWeighting", "resolve_task_weights"]
