"""tf.distribute for keras_mtmm: the strategy a config asks for (`training.distribute`).

The exact global-batch losses across replicas are `keras_mtmm.weighting.replicas`.
"""

from __future__ import annotations

import os

import tensorflow as tf

from keras_mtmm.errors import ConfigError


def make_strategy(kind: str):
    """The tf.distribute strategy for `training.distribute`."""
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ConfigError(
                "training.distribute",
                "multi_worker needs the cluster in the TF_CONFIG environment variable, which is not set",
                "start the workers with `mtmm launch --workers N -- python train.py ...`, or set TF_CONFIG",
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError("training.distribute", f"unknown value {kind!r}", "choose none, mirrored or multi_worker")
