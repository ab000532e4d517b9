"""Exact global-batch losses across tf.distribute replicas, for the training model and the weighting strategies.

With several replicas, each sees a slice of the global batch. A task's loss
must still be the mean over the global batch's labelled examples (label
masks make the slices unequal), and a weighting strategy must see the
global task losses, so that every replica computes the same weights. Inside
a replica:

    partial_t = local_mean_t · local_count_t / global_count_t      (Σ_replicas partial_t = global mean)
    L_t       = N·partial_t + stop_gradient(global_t − N·partial_t) (value: the global loss; gradient: N·∂partial_t)
    loss      = weighting(L, present) / N

Summed over the N replicas (what the optimizer's all-reduce does), the
gradient is exactly that of `weighting(global losses)`, for any loss-only
weighting, its own variables included (e.g. uncertainty's log-variances).
Gradient strategies all-reduce their per-task Jacobians the same way
(`replica_mean`). With one replica everything here is the identity.
"""

from __future__ import annotations

import tensorflow as tf


def num_replicas() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


def replica_sum(value):
    """Sum over the replicas of a value computed in each (the identity outside a replica context)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def replica_mean(value):
    """Mean over the replicas (the identity with one replica)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.MEAN, value)


def global_task_losses(scaled_losses, counts):
    """(losses for the weighting, present, global losses) from this replica's Keras-scaled task losses.

    Args:
        scaled_losses: [T] each task's mean over this replica's labelled examples, times 1/N (Keras
            scales a loss by the replica count under tf.distribute).
        counts: [T] this replica's labelled examples per task.
    """
    replicas = num_replicas()
    if replicas == 1 or tf.distribute.get_replica_context() is None:
        return scaled_losses, tf.cast(counts > 0, scaled_losses.dtype), scaled_losses
    counts = tf.cast(counts, scaled_losses.dtype)
    local_sums = scaled_losses * replicas * counts  # this replica's Σ over its labelled rows
    # One collective for both sums and counts (each all-reduce is a round trip between workers).
    totals = tf.stop_gradient(replica_sum(tf.stack([local_sums, counts])))
    global_sums, global_counts = totals[0], totals[1]
    partial = local_sums / tf.maximum(global_counts, 1.0)
    global_losses = global_sums / tf.maximum(global_counts, 1.0)
    losses = replicas * partial + tf.stop_gradient(global_losses - replicas * partial)
    return losses, tf.cast(global_counts > 0, scaled_losses.dtype), global_losses
