"""Task samplers, and mixing per-task tf.data streams with their probabilities.

When each task has its own dataset D_i (of size n_i), a training step draws
from the tasks with probabilities p_i given by a *sampler*:

- `proportional`: p_i = n_i / Σ_j n_j;
- `uniform`: p_i = 1 / T over the T tasks with n_i > 0;
- `temperature`: p_i ∝ n_i^(1/τ) (τ = 1 is proportional, τ → ∞ uniform);
- `annealed`: from proportional at the first epoch to uniform at the last.

Two ways to mix (`data.mixing`): `mix_interleaved` (each step is one whole
batch of one task, the task drawn with p) and `mix_joint` (each example of a
batch is drawn from task i with probability p_i, so batches mix the tasks).
Both are deterministic for a given seed. `describe_probabilities` formats
the probabilities for the run log.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from keras_mtmm.registry import SAMPLERS


def _check_sizes(sizes: dict[str, int]) -> dict[str, int]:
    """Return `sizes` if usable: not empty, no negative size, at least one positive."""
    if not sizes:
        raise ValueError("sizes: expected at least one task, got an empty dict")
    negative = {task: size for task, size in sizes.items() if size < 0}
    if negative:
        raise ValueError(f"sizes: expected sizes >= 0, got {negative}")
    if not any(size > 0 for size in sizes.values()):
        raise ValueError(f"sizes: expected at least one task with examples, got all sizes 0: {dict(sizes)}")
    return sizes


def _check_epoch(epoch: int, epochs: int) -> None:
    if epochs < 1:
        raise ValueError(f"epochs: expected >= 1, got {epochs}")
    if not 0 <= epoch < epochs:
        raise ValueError(f"epoch: expected 0 <= epoch < epochs={epochs}, got {epoch}")


class Sampler:
    """Base class: the probability of drawing from each task, given the task sizes.

    Subclasses implement `probabilities`; the result is ordered like `sizes`,
    sums to 1 and gives probability 0 to tasks of size 0.
    """

    def probabilities(self, sizes: dict[str, int], epoch: int = 0, epochs: int = 1) -> dict[str, float]:
        """Return task name -> probability for `epoch` (0-based) of `epochs`."""
        raise NotImplementedError

    def schedule(self, sizes: dict[str, int], epochs: int) -> list[dict[str, float]]:
        """Return the probabilities of every epoch, `[probabilities(sizes, e, epochs) for e in range(epochs)]`."""
        return [self.probabilities(sizes, epoch, epochs) for epoch in range(epochs)]


@SAMPLERS.register("proportional")
class ProportionalSampler(Sampler):
    """Draw tasks in proportion to their sizes: `p_i = n_i / Σ_j n_j`.

    Example:
        >>> ProportionalSampler().probabilities({"a": 900, "b": 100})
        {'a': 0.9, 'b': 0.1}
    """

    def probabilities(self, sizes: dict[str, int], epoch: int = 0, epochs: int = 1) -> dict[str, float]:
        _check_sizes(sizes)
        _check_epoch(epoch, epochs)
        total = sum(sizes.values())
        return {task: size / total for task, size in sizes.items()}


@SAMPLERS.register("uniform")
class UniformSampler(Sampler):
    """Draw every task with examples equally often: `p_i = 1 / T` over the T tasks with `n_i > 0`.

    Example:
        >>> UniformSampler().probabilities({"a": 900, "b": 100, "c": 0})
        {'a': 0.5, 'b': 0.5, 'c': 0.0}
    """

    def probabilities(self, sizes: dict[str, int], epoch: int = 0, epochs: int = 1) -> dict[str, float]:
        _check_sizes(sizes)
        _check_epoch(epoch, epochs)
        count = sum(1 for size in sizes.values() if size > 0)
        return {task: (1.0 / count if size > 0 else 0.0) for task, size in sizes.items()}


@SAMPLERS.register("temperature")
class TemperatureSampler(Sampler):
    """Temperature-scaled sampling: `p_i = n_i^(1/τ) / Σ_j n_j^(1/τ)`.

    τ = 1 is proportional sampling and τ → ∞ tends to uniform; in between,
    small tasks are drawn more often than their size alone would give
    (Arivazhagan et al., "Massively Multilingual Neural Machine Translation
    in the Wild", 2019). Computed in log space, so a small τ does not overflow.

    Args:
        temperature: τ, > 0.

    Example:
        >>> probabilities = TemperatureSampler(temperature=2.0).probabilities({"a": 900, "b": 100})
        >>> {task: round(p, 6) for task, p in probabilities.items()}  # ∝ √900 : √100 = 30 : 10
        {'a': 0.75, 'b': 0.25}
    """

    def __init__(self, temperature: float = 2.0):
        if not temperature > 0:
            raise ValueError(f"TemperatureSampler: temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def probabilities(self, sizes: dict[str, int], epoch: int = 0, epochs: int = 1) -> dict[str, float]:
        _check_sizes(sizes)
        _check_epoch(epoch, epochs)
        logs = {task: math.log(size) / self.temperature for task, size in sizes.items() if size > 0}
        largest = max(logs.values())
        scores = {task: math.exp(logs[task] - largest) if task in logs else 0.0 for task in sizes}
        total = sum(scores.values())
        return {task: score / total for task, score in scores.items()}


@SAMPLERS.register("annealed")
class AnnealedSampler(Sampler):
    """Anneal from proportional sampling at the first epoch to uniform at the last.

    Linear interpolation of the probabilities:

        p_i(e) = (1 − a_e) · n_i / Σ_j n_j  +  a_e · 1/T,   a_e = e / max(E − 1, 1)

    for epoch e = 0 … E − 1 (T: the tasks with n_i > 0), so epoch 0 is exactly
    proportional and epoch E − 1 exactly uniform (with E = 1, the only epoch is
    proportional). This follows the idea of annealed sampling in Stickland &
    Murray, "BERT and PALs: Projected Attention Layers for Efficient Adaptation
    in Multi-Task Learning", ICML 2019, which instead anneals the exponent of
    `p_i ∝ n_i^α` from α = 1 to 0.2 (α_e = 1 − 0.8 e/(E − 1)) and so never
    reaches uniform; we interpolate the probabilities so both ends are exact.

    Example:
        >>> AnnealedSampler().probabilities({"a": 900, "b": 100}, epoch=1, epochs=3)
        {'a': 0.7, 'b': 0.3}
    """

    def probabilities(self, sizes: dict[str, int], epoch: int = 0, epochs: int = 1) -> dict[str, float]:
        _check_sizes(sizes)
        _check_epoch(epoch, epochs)
        progress = epoch / max(epochs - 1, 1)
        proportional = ProportionalSampler().probabilities(sizes)
        uniform = UniformSampler().probabilities(sizes)
        return {task: (1.0 - progress) * proportional[task] + progress * uniform[task] for task in sizes}


def build_sampler(name: str, temperature: float = 2.0) -> Sampler:
    """Build the sampler `data.sampler` names.

    Args:
        name: one of `SAMPLERS.names()`; a miss raises the registry's `ConfigError`.
        temperature: τ of the `temperature` sampler (ignored by the others).

    Example:
        >>> build_sampler("temperature", temperature=3.0).temperature
        3.0
    """
    sampler_class = SAMPLERS.get(name)
    if sampler_class is TemperatureSampler:
        return TemperatureSampler(temperature=temperature)
    return sampler_class()


def describe_probabilities(probabilities: dict[str, float]) -> str:
    """Format probabilities for the run log.

    Example:
        >>> describe_probabilities({"shape": 0.5, "price": 0.5})
        'shape=0.500, price=0.500'
    """
    return ", ".join(f"{task}={probability:.3f}" for task, probability in probabilities.items())


def _weights(
    names: list[str],
    probabilities_per_epoch: list[dict[str, float]] | dict[str, float],
    draws_per_epoch: int,
) -> list[float] | tf.data.Dataset:
    """The sampling weights: one vector, or a dataset of one vector per draw."""
    per_epoch = [probabilities_per_epoch] if isinstance(probabilities_per_epoch, dict) else probabilities_per_epoch
    if not per_epoch:
        raise ValueError("probabilities_per_epoch: expected at least one epoch's probabilities, got an empty list")
    for epoch, probabilities in enumerate(per_epoch):
        if set(probabilities) != set(names):
            raise ValueError(
                f"probabilities_per_epoch[{epoch}]: expected probabilities for the tasks {names}, "
                f"got {sorted(probabilities)}"
            )
    vectors = np.array([[probabilities[task] for task in names] for probabilities in per_epoch], dtype=np.float32)
    if isinstance(probabilities_per_epoch, dict):
        return vectors[0].tolist()
    return tf.data.Dataset.from_tensor_slices(vectors).flat_map(
        lambda vector: tf.data.Dataset.from_tensors(vector).repeat(draws_per_epoch)
    )


def _sample(datasets: dict[str, tf.data.Dataset], names: list[str], weights, seed: int) -> tf.data.Dataset:
    """Draw the dataset of each element from `weights` by a stateless draw seeded by `(seed, draw)`.

    Like `Dataset.sample_from_datasets`, but its order does not depend on the
    global TF seed a caller may have set (which `sample_from_datasets` pairs
    with its op seed): the same config gives the same mix in every process.
    """
    if isinstance(weights, tf.data.Dataset):
        per_draw = tf.data.Dataset.zip(tf.data.Dataset.counter(), weights)
    else:
        fixed = tf.constant(weights, tf.float32)
        per_draw = tf.data.Dataset.counter().map(lambda draw: (draw, fixed))

    def choose(draw, vector):
        logits = tf.math.log(vector)[tf.newaxis]  # a zero probability is never drawn
        picked = tf.random.stateless_categorical(logits, 1, seed=tf.stack([tf.constant(seed, tf.int64), draw]))
        return picked[0, 0]

    choices = per_draw.map(choose, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return tf.data.Dataset.choose_from_datasets(
        [datasets[task] for task in names], choices, stop_on_empty_dataset=False
    )


def _check_positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name}: expected >= 1, got {value}")


def mix_interleaved(
    batched: dict[str, tf.data.Dataset],
    probabilities_per_epoch: list[dict[str, float]] | dict[str, float],
    steps_per_epoch: int,
    seed: int,
) -> tf.data.Dataset:
    """Interleave whole batches: each element is one batch of one task, the task drawn with p.

    With one dict of probabilities the stream never ends (use it with
    `fit(steps_per_epoch=...)`). With a list, one dict per epoch (e.g. an
    `AnnealedSampler.schedule`), batches `e·S … (e+1)·S − 1` use epoch e's
    probabilities (S = `steps_per_epoch`) and the stream ends after `E·S`
    batches; pass the same `steps_per_epoch` to `fit`.

    Args:
        batched: task name -> that task's batched, repeated dataset.
        probabilities_per_epoch: task name -> probability, or a list of those, one per epoch.
        steps_per_epoch: batches per epoch.
        seed: seeds the draws; the same seed gives the same sequence of tasks.

    Example:
        >>> mix_interleaved({"a": a_batches, "b": b_batches}, {"a": 0.75, "b": 0.25}, steps_per_epoch=100, seed=0)
    """
    _check_positive("steps_per_epoch", steps_per_epoch)
    names = list(batched)
    weights = _weights(names, probabilities_per_epoch, steps_per_epoch)
    return _sample(batched, names, weights, seed)


def mix_joint(
    examples: dict[str, tf.data.Dataset],
    probabilities_per_epoch: list[dict[str, float]] | dict[str, float],
    batch_size: int,
    steps_per_epoch: int,
    seed: int,
) -> tf.data.Dataset:
    """Mix tasks within each batch: every example is drawn from task i with probability p_i, then batched.

    Each batch holds about `p_i · batch_size` examples of task i. The elements
    (e.g. `(inputs, targets, masks)`) must have the same structure for every
    task; their masks say which task labels each example. One dict of
    probabilities gives an endless stream; a list gives one dict per epoch of
    `steps_per_epoch` batches and ends after `E · steps_per_epoch` batches.

    Args:
        examples: task name -> that task's unbatched, repeated dataset.
        probabilities_per_epoch: task name -> probability, or a list of those, one per epoch.
        batch_size: examples per batch (every batch is full).
        steps_per_epoch: batches per epoch.
        seed: seeds the draws; the same seed gives the same sequence.

    Example:
        >>> mix_joint({"a": a_examples, "b": b_examples}, {"a": 0.5, "b": 0.5}, 32, steps_per_epoch=100, seed=0)
    """
    _check_positive("batch_size", batch_size)
    _check_positive("steps_per_epoch", steps_per_epoch)
    names = list(examples)
    weights = _weights(names, probabilities_per_epoch, steps_per_epoch * batch_size)
    mixed = _sample(examples, names, weights, seed)
    return mixed.batch(batch_size, drop_remainder=True)
