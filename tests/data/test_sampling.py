"""Task samplers against their formulas, and the tf.data mixing against the configured probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.data.sampling import (
    SAMPLERS,
    AnnealedSampler,
    ProportionalSampler,
    TemperatureSampler,
    UniformSampler,
    build_sampler,
    describe_probabilities,
    mix_interleaved,
    mix_joint,
)
from keras_mtmm.errors import ConfigError

SIZES = {"a": 900, "b": 100}
TASKS = ["a", "b", "c"]


def assert_probabilities(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert list(actual) == list(expected)
    np.testing.assert_allclose([actual[t] for t in expected], [expected[t] for t in expected], atol=1e-12)


def assert_frequencies(task_ids: np.ndarray, probabilities: dict[str, float]) -> None:
    """Each task's observed frequency is within 4 standard errors, sqrt(p(1-p)/n), of its probability."""
    draws = len(task_ids)
    for index, task in enumerate(probabilities):
        p = probabilities[task]
        frequency = float(np.mean(task_ids == index))
        tolerance = 4 * math.sqrt(p * (1 - p) / draws)
        assert abs(frequency - p) <= tolerance, f"{task}: frequency {frequency:.4f}, p {p:.4f}, ±{tolerance:.4f}"


def task_batches(batch_size: int = 4) -> dict[str, tf.data.Dataset]:
    """Per-task batched, repeated datasets whose elements carry the task's index; `c` is empty."""
    batched = {
        task: tf.data.Dataset.from_tensors({"task": tf.constant(index)}).repeat().batch(batch_size)
        for index, task in enumerate(TASKS[:2])
    }
    batched["c"] = tf.data.Dataset.from_tensors({"task": tf.constant(2)}).repeat(batch_size).batch(batch_size).take(0)
    return batched


def task_examples() -> dict[str, tf.data.Dataset]:
    """Per-task unbatched `(inputs, targets, masks)` streams; each task labels only itself."""

    def example(index: int):
        inputs = {"x": tf.constant(float(index))}
        targets = {task: tf.constant(float(index)) for task in TASKS[:2]}
        masks = {task: tf.constant(1.0 if i == index else 0.0) for i, task in enumerate(TASKS[:2])}
        return tf.data.Dataset.from_tensors((inputs, targets, masks)).repeat()

    return {task: example(index) for index, task in enumerate(TASKS[:2])}


def interleaved_task_ids(dataset: tf.data.Dataset) -> np.ndarray:
    """The task of each batch (asserting every batch is single-task)."""
    ids = []
    for batch in dataset.as_numpy_iterator():
        assert len(set(batch["task"].tolist())) == 1, f"a mixed interleaved batch: {batch['task']}"
        ids.append(int(batch["task"][0]))
    return np.array(ids)


def test_proportional_probabilities():
    assert_probabilities(ProportionalSampler().probabilities(SIZES), {"a": 0.9, "b": 0.1})
    assert_probabilities(
        ProportionalSampler().probabilities({"b": 1, "c": 0, "a": 3}), {"b": 0.25, "c": 0.0, "a": 0.75}
    )


def test_uniform_probabilities_skip_empty_tasks():
    assert_probabilities(UniformSampler().probabilities(SIZES), {"a": 0.5, "b": 0.5})
    assert_probabilities(UniformSampler().probabilities({"a": 5, "b": 0, "c": 1}), {"a": 0.5, "b": 0.0, "c": 0.5})


def test_temperature_probabilities():
    # τ = 2: ∝ √900 : √100 = 30 : 10.
    assert_probabilities(TemperatureSampler(2.0).probabilities(SIZES), {"a": 0.75, "b": 0.25})
    assert_probabilities(TemperatureSampler(1.0).probabilities(SIZES), {"a": 0.9, "b": 0.1})
    nearly_uniform = TemperatureSampler(1e9).probabilities({**SIZES, "c": 0})
    np.testing.assert_allclose(list(nearly_uniform.values()), [0.5, 0.5, 0.0], atol=1e-8)
    # A small τ does not overflow (900^100 would): the largest task takes everything.
    assert_probabilities(TemperatureSampler(0.01).probabilities(SIZES), {"a": 1.0, "b": 0.0})


def test_annealed_goes_from_proportional_to_uniform_linearly():
    sampler = AnnealedSampler()
    # a_e = e / (E - 1); p = (1 - a) (0.9, 0.1) + a (0.5, 0.5).
    assert_probabilities(sampler.probabilities(SIZES, epoch=0, epochs=3), {"a": 0.9, "b": 0.1})
    assert_probabilities(sampler.probabilities(SIZES, epoch=1, epochs=3), {"a": 0.7, "b": 0.3})
    assert_probabilities(sampler.probabilities(SIZES, epoch=2, epochs=3), {"a": 0.5, "b": 0.5})
    assert_probabilities(sampler.probabilities(SIZES, epoch=1, epochs=5), {"a": 0.8, "b": 0.2})
    # One epoch: proportional.
    assert_probabilities(sampler.probabilities(SIZES, epoch=0, epochs=1), {"a": 0.9, "b": 0.1})
    schedule = sampler.schedule({**SIZES, "c": 0}, epochs=3)
    assert [round(p["a"], 6) for p in schedule] == [0.9, 0.7, 0.5]
    assert all(p["c"] == 0.0 for p in schedule)


@pytest.mark.parametrize("name", ["proportional", "uniform", "temperature", "annealed"])
def test_probabilities_follow_task_order_and_sum_to_one(name):
    sizes = {"z": 7, "y": 0, "x": 300}
    for epoch in range(4):
        probabilities = build_sampler(name).probabilities(sizes, epoch=epoch, epochs=4)
        assert list(probabilities) == ["z", "y", "x"]
        assert probabilities["y"] == 0.0
        assert math.isclose(sum(probabilities.values()), 1.0)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_temperature_must_be_positive(temperature):
    with pytest.raises(ValueError, match="temperature must be > 0"):
        TemperatureSampler(temperature)


@pytest.mark.parametrize("name", ["proportional", "uniform", "temperature", "annealed"])
def test_bad_sizes_and_epochs_are_rejected(name):
    sampler = build_sampler(name)
    with pytest.raises(ValueError, match="all sizes 0"):
        sampler.probabilities({"a": 0, "b": 0})
    with pytest.raises(ValueError, match="empty dict"):
        sampler.probabilities({})
    with pytest.raises(ValueError, match="sizes >= 0"):
        sampler.probabilities({"a": 5, "b": -1})
    with pytest.raises(ValueError, match="epoch: expected 0 <= epoch < epochs=2, got 2"):
        sampler.probabilities(SIZES, epoch=2, epochs=2)


def test_build_sampler_by_name():
    assert SAMPLERS.names() == ["annealed", "proportional", "temperature", "uniform"]
    assert isinstance(build_sampler("proportional"), ProportionalSampler)
    assert isinstance(build_sampler("annealed"), AnnealedSampler)
    assert build_sampler("temperature", temperature=3.0).temperature == 3.0
    with pytest.raises(ConfigError, match=r"data.sampler: unknown data.sampler 'unifrom'.*did you mean 'uniform'"):
        build_sampler("unifrom")


def test_describe_probabilities():
    assert describe_probabilities({"shape": 0.5, "price": 0.5}) == "shape=0.500, price=0.500"
    assert describe_probabilities(TemperatureSampler(2.0).probabilities(SIZES)) == "a=0.750, b=0.250"


@pytest.mark.parametrize("name", ["proportional", "temperature"])
def test_interleaved_frequencies_match_the_sampler(name):
    probabilities = build_sampler(name).probabilities({**SIZES, "c": 0})
    mixed = mix_interleaved(task_batches(), probabilities, steps_per_epoch=100, seed=3)
    task_ids = interleaved_task_ids(mixed.take(3000))
    assert len(task_ids) == 3000
    assert_frequencies(task_ids, probabilities)
    assert not np.any(task_ids == 2)


def test_interleaved_annealed_frequencies_per_epoch():
    epochs, steps = 3, 1000
    schedule = AnnealedSampler().schedule({**SIZES, "c": 0}, epochs)
    mixed = mix_interleaved(task_batches(), schedule, steps_per_epoch=steps, seed=5)
    task_ids = interleaved_task_ids(mixed)
    assert len(task_ids) == epochs * steps  # the stream ends after E·S batches
    assert_frequencies(task_ids[:steps], schedule[0])  # (0.9, 0.1, 0)
    assert_frequencies(task_ids[-steps:], schedule[-1])  # (0.5, 0.5, 0)


def test_joint_batches_mix_tasks_with_the_probabilities():
    probabilities = {"a": 0.75, "b": 0.25}
    mixed = mix_joint(task_examples(), probabilities, batch_size=16, steps_per_epoch=100, seed=7)
    batches = list(mixed.take(250).as_numpy_iterator())
    inputs, targets, masks = batches[0]
    assert set(inputs) == {"x"} and set(targets) == set(masks) == {"a", "b"}
    assert all(batch[0]["x"].shape == (16,) for batch in batches)
    task_ids = np.concatenate([batch[0]["x"] for batch in batches]).astype(int)
    assert_frequencies(task_ids, probabilities)
    # Each example keeps its own task's mask; batches hold both tasks.
    for batch_inputs, _, batch_masks in batches:
        np.testing.assert_array_equal(batch_masks["b"], batch_inputs["x"])
    assert sum(len(set(batch[0]["x"].tolist())) == 2 for batch in batches) > 200


def test_joint_annealed_frequencies_per_epoch():
    epochs, steps, batch_size = 2, 100, 16
    schedule = AnnealedSampler().schedule(SIZES, epochs)
    mixed = mix_joint(task_examples(), schedule, batch_size=batch_size, steps_per_epoch=steps, seed=11)
    task_ids = np.stack([inputs["x"] for inputs, _, _ in mixed.as_numpy_iterator()]).astype(int)
    assert task_ids.shape == (epochs * steps, batch_size)
    assert_frequencies(task_ids[:steps].ravel(), schedule[0])
    assert_frequencies(task_ids[steps:].ravel(), schedule[1])


def test_same_seed_gives_the_same_sequence():
    def interleaved(seed, probabilities):
        return interleaved_task_ids(mix_interleaved(task_batches(), probabilities, 50, seed=seed).take(100))

    def joint(seed, probabilities):
        mixed = mix_joint(task_examples(), probabilities, batch_size=8, steps_per_epoch=10, seed=seed).take(20)
        return np.stack([inputs["x"] for inputs, _, _ in mixed.as_numpy_iterator()])

    for draw, sizes in ((interleaved, {**SIZES, "c": 0}), (joint, SIZES)):
        uniform = UniformSampler().probabilities(sizes)
        for probabilities in (uniform, AnnealedSampler().schedule(sizes, epochs=2)):
            first, again, other = draw(1, probabilities), draw(1, probabilities), draw(2, probabilities)
            np.testing.assert_array_equal(first, again)
            assert not np.array_equal(first, other)
    # One mixed dataset iterated twice repeats its sequence.
    mixed = mix_interleaved(task_batches(), AnnealedSampler().schedule({**SIZES, "c": 0}, 2), 50, seed=4)
    np.testing.assert_array_equal(interleaved_task_ids(mixed), interleaved_task_ids(mixed))


def test_probabilities_must_name_the_datasets_tasks():
    with pytest.raises(ValueError, match=r"probabilities_per_epoch\[0\]: expected probabilities for the tasks"):
        mix_interleaved(task_batches(), {"a": 1.0}, steps_per_epoch=10, seed=0)
    with pytest.raises(ValueError, match="at least one epoch"):
        mix_joint(task_examples(), [], batch_size=4, steps_per_epoch=10, seed=0)
    with pytest.raises(ValueError, match="batch_size: expected >= 1, got 0"):
        mix_joint(task_examples(), {"a": 0.5, "b": 0.5}, batch_size=0, steps_per_epoch=10, seed=0)
