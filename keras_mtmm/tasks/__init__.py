"""Task types (binary, multiclass, multilabel, regression, token_tagging): label rules, losses, metrics.

Importing this package registers every task type in `keras_mtmm.registry.TASK_TYPES`.
"""

from keras_mtmm.tasks import binary, masked_lm, multiclass, multilabel, regression, token_tagging  # noqa: F401 (registers them)
from keras_mtmm.tasks.base import TaskType, get_task_type
from keras_mtmm.tasks.losses import ScaledMeanSquaredError

__all__ = ["ScaledMeanSquaredError", "TaskType", "get_task_type"]
