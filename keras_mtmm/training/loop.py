"""The custom distributed training loop for `training.distribute: multi_worker`.

Keras 3's `fit` fails under `MultiWorkerMirroredStrategy` (keras-team/keras
#20585), so multi-worker training runs this loop instead: each step is
`strategy.run(model.train_step, ...)` on a distributed batch, so every
sharing type, fusion, label mask and weighting strategy (loss-only and
gradient-based) trains as it does under `fit`, with the global-batch losses
of `keras_mtmm.training.distributed`. The run's Keras callbacks (history, step
checkpoints, the non-finite guard, best checkpoint, early stopping,
TensorBoard) are driven by hand, with the same logs `fit` gives them.

The training stream is auto-sharded by DATA (every worker runs the same
deterministic pipeline and keeps its part of each global batch), so a run
on N workers sees the global batches a single worker would.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def is_chief(strategy) -> bool:
    """Whether this process writes the run's files: the chief, or worker 0 when the cluster has no chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def worker_description(strategy) -> str:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return "single worker"
    return f"{resolver.task_type} {resolver.task_id}"


def distribute(strategy, dataset):
    """The dataset split over the strategy's replicas, auto-sharded by DATA."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def fit_loop(
    model,
    strategy,
    stream,
    validation_data,
    first_epoch: int,
    epochs: int,
    steps_per_epoch: int,
    callbacks,
) -> None:
    """Train epochs `first_epoch` to `epochs - 1`, `steps_per_epoch` steps each, on `stream` (batches).

    `callbacks` is a `keras.callbacks.CallbackList` holding the run's callbacks.
    """

    @tf.function
    def train_step(iterator):
        strategy.run(model.train_step, args=(next(iterator),))

    @tf.function
    def test_step(batch):
        strategy.run(model.test_step, args=(batch,))

    iterator = iter(distribute(strategy, stream))
    validation = distribute(strategy, validation_data) if validation_data is not None else None
    callbacks.on_train_begin()
    for epoch in range(first_epoch, epochs):
        model.reset_metrics()
        callbacks.on_epoch_begin(epoch)
        logs = {}
        for step in range(steps_per_epoch):
            callbacks.on_train_batch_begin(step)
            train_step(iterator)
            logs = _python(model.get_metrics_result())
            callbacks.on_train_batch_end(step, logs)
        if validation is not None:
            model.reset_metrics()
            for batch in validation:
                test_step(batch)
            logs = {**logs, **{f"val_{k}": v for k, v in _python(model.get_metrics_result()).items()}}
        callbacks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callbacks.on_train_end(logs if epochs > first_epoch else {})


def _python(values: dict) -> dict:
    return {key: float(np.asarray(value)) for key, value in values.items() if np.ndim(value) == 0}
