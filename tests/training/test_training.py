"""The weighted multi-task loss, label masks and task weighting, checked by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_mtmm.data.tables import load_splits
from keras_mtmm.errors import DataError
from keras_mtmm.evaluation.scoring import score_tasks
from keras_mtmm.export.saved_model import model_metadata
from keras_mtmm.models.multitask import compile_model
from keras_mtmm.models.network import build_model
from keras_mtmm.preprocessing.preprocessor import Preprocessor
from keras_mtmm.tasks import get_task_type
from keras_mtmm.weighting import resolve_task_weights

WEIGHTS = {"shape": 0.3, "premium": 2.0, "price": 0.5}


@pytest.fixture(scope="module")
def fixed_batch(tmp_path_factory, tiny_config_factory):
    """A compiled (untrained) tiny model and one fixed batch of preprocessed inputs, targets and masks."""
    config = tiny_config_factory()
    splits = load_splits(config)
    preprocessor = Preprocessor.from_settings(config)
    preprocessor.adapt(splits["train"], tmp_path_factory.mktemp("preprocessor"))
    model = compile_model(build_model(config, preprocessor), config, preprocessor, WEIGHTS)
    table = {name: values[:40] for name, values in splits["train"].items()}
    inputs = {name: np.asarray(t) for name, t in preprocessor.transform(preprocessor.raw_inputs(table)).items()}
    targets, masks = preprocessor.encode_labels(table)
    return config, preprocessor, model, inputs, targets, masks


def by_hand(preprocessor, config, predictions, targets, masks):
    """Per-task losses as the mean over labelled rows, from the NumPy formulas."""
    losses = {}
    for task, task_config in config.tasks.items():
        task_type = get_task_type(task_config.type)
        rows = masks[task] > 0
        per_example = task_type.example_losses(
            predictions[task][rows], targets[task][rows], preprocessor.target_statistics(task)[1]
        )
        losses[task] = float(per_example.mean()) if rows.any() else 0.0
    return losses


def test_total_loss_is_the_weighted_sum_of_task_losses(fixed_batch):
    config, preprocessor, model, inputs, targets, masks = fixed_batch
    assert 0 < masks["price"].sum() < len(masks["price"]), "the batch should have some unlabelled prices"
    reported = model.evaluate(inputs, targets, sample_weight=masks, batch_size=64, verbose=0, return_dict=True)
    predictions = model.predict(inputs, verbose=0)
    task_losses = by_hand(preprocessor, config, predictions, targets, masks)
    for task, loss in task_losses.items():
        assert reported[f"{task}_loss"] == pytest.approx(loss, rel=1e-4, abs=1e-6)
    expected_total = sum(WEIGHTS[task] * loss for task, loss in task_losses.items())
    assert reported["loss"] == pytest.approx(expected_total, rel=1e-4)
    # And not the unweighted sum: the weights must matter.
    assert abs(sum(task_losses.values()) - expected_total) > 1e-3


def test_a_task_without_labels_adds_zero_loss_and_metrics_count_labelled_rows(fixed_batch):
    config, preprocessor, model, inputs, targets, masks = fixed_batch
    masks = dict(masks)
    masks["shape"] = np.zeros_like(masks["shape"])
    reported = model.evaluate(inputs, targets, sample_weight=masks, batch_size=64, verbose=0, return_dict=True)
    assert reported["shape_loss"] == 0.0
    predictions = model.predict(inputs, verbose=0)
    task_losses = by_hand(preprocessor, config, predictions, targets, masks)
    assert reported["loss"] == pytest.approx(
        WEIGHTS["premium"] * task_losses["premium"] + WEIGHTS["price"] * task_losses["price"], rel=1e-4
    )

    # Keras' weighted metrics see only labelled rows: accuracy over the labelled half only.
    half = {**masks, "premium": (np.arange(len(masks["premium"])) % 2).astype(np.float32)}
    reported = model.evaluate(inputs, targets, sample_weight=half, batch_size=64, verbose=0, return_dict=True)
    rows = half["premium"] > 0
    expected = np.mean((predictions["premium"][rows, 0] > 0.5) == (targets["premium"][rows, 0] > 0.5))
    assert reported["premium_accuracy"] == pytest.approx(expected, abs=1e-6)


def test_score_tasks_ignores_unlabelled_rows_and_counts_labelled(fixed_batch):
    config, preprocessor, model, inputs, targets, masks = fixed_batch
    metadata = model_metadata(config, preprocessor, WEIGHTS)
    predictions = {task: np.array(value) for task, value in model.predict(inputs, verbose=0).items()}
    baseline = score_tasks(predictions, targets, masks, metadata)
    # Garbage predictions on unlabelled price rows change nothing.
    unlabelled = masks["price"] == 0
    predictions["price"][unlabelled] = 1e6
    again = score_tasks(predictions, targets, masks, metadata)
    assert again["tasks"]["price"] == baseline["tasks"]["price"]
    assert again["tasks"]["price"]["labelled"] == int(masks["price"].sum())
    no_shape = score_tasks(predictions, targets, {**masks, "shape": np.zeros_like(masks["shape"])}, metadata)
    assert no_shape["tasks"]["shape"]["labelled"] == 0
    assert no_shape["tasks"]["shape"]["loss"] == 0.0 and no_shape["tasks"]["shape"]["accuracy"] is None
    assert no_shape["loss"] == pytest.approx(
        baseline["loss"] - WEIGHTS["shape"] * baseline["tasks"]["shape"]["loss"], rel=1e-9
    )


def test_inverse_size_weights_follow_label_counts():
    counts = {"a": 100, "b": 300, "c": 600}
    weights = resolve_task_weights("inverse_size", {"a": 1.0, "b": 1.0, "c": 1.0}, counts)
    assert sum(weights.values()) == pytest.approx(3.0)
    assert weights["a"] / weights["b"] == pytest.approx(3.0)
    assert weights["a"] / weights["c"] == pytest.approx(6.0)
    with pytest.raises(DataError, match="no labelled training example"):
        resolve_task_weights("inverse_size", {"a": 1.0, "b": 1.0}, {"a": 0, "b": 5})


def test_static_weights_are_the_configured_ones():
    assert resolve_task_weights("static", {"a": 0.25, "b": 4.0}, {"a": 1, "b": 1}) == {"a": 0.25, "b": 4.0}


def test_run_folder_records_config_history_weights_and_metrics(tiny_run):
    run_dir = tiny_run.run_dir
    for name in (
        "config.yaml",
        "metadata.json",
        "history.json",
        "metrics.json",
        "best.keras",
        "preprocessor/state.json",
    ):
        assert (run_dir / name).exists(), name
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["loss"]) == 2
    assert history["weight_premium"] == [1.0, 1.0]
    assert {"shape_loss", "premium_loss", "price_loss", "val_loss"} <= set(history)
    assert not (run_dir / "backup").exists(), "BackupAndRestore state is removed after a finished run"
    assert list((run_dir / "logs").rglob("events.out.tfevents.*")), "TensorBoard logs are written"


def test_an_interrupted_run_resumes_from_the_last_finished_epoch(tmp_path, tiny_config_factory, monkeypatch):
    from keras_mtmm.run_folder import read_history
    from keras_mtmm.training.callbacks import WeightingLogger
    from keras_mtmm.training.run import train

    config = tiny_config_factory("training.epochs=3", "training.steps_per_epoch=3")
    started = []

    def interrupt_at_epoch_2(self, epoch, logs=None):
        started.append(epoch)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(WeightingLogger, "on_epoch_begin", interrupt_at_epoch_2, raising=False)
    with pytest.raises(KeyboardInterrupt):
        train(config, output_dir=tmp_path / "run", export=False, verbose=0)
    assert (tmp_path / "run" / "backup").exists()
    first = read_history(tmp_path / "run" / "history.json")
    assert first["epoch"] == [0, 1]

    started.clear()
    monkeypatch.setattr(WeightingLogger, "on_epoch_begin", lambda self, epoch, logs=None: started.append(epoch))
    result = train(
        tiny_config_factory("training.epochs=3", "training.steps_per_epoch=3"),
        output_dir=tmp_path / "run",
        export=False,
        verbose=0,
    )
    assert started == [2], "only the unfinished epoch runs again"
    assert result.history["epoch"] == [0, 1, 2]
    assert result.history["loss"][:2] == first["loss"], "the first epochs' records are kept as they were"
    assert not (tmp_path / "run" / "backup").exists()


def test_same_seed_gives_identical_weights(tmp_path, tiny_config_factory):
    from keras_mtmm.training.run import train

    overrides = ("training.epochs=1", "training.steps_per_epoch=3")
    first = train(tiny_config_factory(*overrides), output_dir=tmp_path / "a", export=False, verbose=0)
    first_seed = tiny_config_factory(*overrides).seed
    second = train(tiny_config_factory(*overrides), output_dir=tmp_path / "b", export=False, verbose=0)
    for a, b in zip(first.model.get_weights(), second.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    other = train(tiny_config_factory(*overrides, "seed=7"), output_dir=tmp_path / "c", export=False, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(first.model.get_weights(), other.model.get_weights()))
    recorded = json.loads((tmp_path / "a" / "metadata.json").read_text())["reproducibility"]
    assert recorded["seed"] == first_seed and recorded["deterministic"] is True
    assert {"tensorflow", "keras", "keras_mtmm", "numpy", "python"} <= set(recorded)


@pytest.mark.parametrize("cache", [False, True])
def test_repeated_training_streams_do_not_depend_on_global_tf_state(cache):
    """`_batches`' endless stream (steps_per_epoch, checkpoints, resume) under every global seed and
    with op determinism on: the same batches, and no tracing error for a global seed of 0."""
    import keras
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    from keras_mtmm.data.pipeline import _batches

    def stream():
        examples = tf.data.Dataset.from_tensor_slices(tf.range(30))
        batches = _batches(examples, lambda x: x * 1, 30, 4, True, 3, 30, True, cache, 0)
        return [b.numpy().tolist() for b in batches.take(24)]  # three data passes of 8 batches

    reference = stream()
    assert sorted(sum(reference[:8], [])) == list(range(30))  # a pass is a permutation
    assert reference[:8] != reference[8:16] != reference[16:]  # and each pass has its own order
    for global_seed in (0, 2**31 - 1, 1, 42):
        keras.utils.set_random_seed(global_seed)
        assert stream() == reference, global_seed
    tf_config.enable_op_determinism()
    assert stream() == reference
