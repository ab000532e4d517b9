"""The `auto` execution settings (cache, steps per execution, XLA) and the in-memory training cache."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.errors import ConfigError
from keras_mtmm.training.execution import (
    MIN_STEPS_FOR_MULTI,
    resolve_cache,
    resolve_jit_compile,
    resolve_steps_per_execution,
)


@pytest.mark.parametrize(
    ("setting", "steps_per_epoch", "checkpoint_every", "distribute", "expected"),
    [
        ("auto", 438, 0, "none", 6),  # 438 = 2·3·73: the largest divisor up to 32
        ("auto", 640, 0, "none", 32),
        ("auto", 128, 48, "none", 16),  # gcd(128, 48) = 16: checkpoints fall on execution boundaries
        ("auto", 127, 0, "none", 1),  # prime
        ("auto", MIN_STEPS_FOR_MULTI - 1, 0, "none", 1),  # a short epoch: tracing the loop costs more
        ("auto", None, 0, "none", 32),  # an epoch of unknown length ends where the data does
        ("auto", 640, 0, "multi_worker", 1),
        (32, 63, 0, "none", 21),  # a user's 32 lowered: 32 steps per execution would train 64 per epoch
        (8, 64, 0, "none", 8),
        (8, 64, 12, "none", 4),
    ],
)
def test_steps_per_execution_divides_the_epoch(setting, steps_per_epoch, checkpoint_every, distribute, expected):
    steps, reason = resolve_steps_per_execution(setting, steps_per_epoch, checkpoint_every, distribute)
    assert steps == expected, reason
    if steps_per_epoch:
        assert steps_per_epoch % steps == 0 and (not checkpoint_every or checkpoint_every % steps == 0)


def test_cache_auto_decides_from_the_size_and_says_why(monkeypatch):
    import keras_mtmm.training.execution as execution

    monkeypatch.setattr(execution, "_available_memory", lambda: 8 << 30)  # budget: min(1 GiB, 2 GiB)
    chosen = resolve_cache("auto", 10 << 20, False, "none")
    assert chosen == (True, "auto: 10.0 MiB preprocessed, within the 1.0 GiB budget")
    assert resolve_cache("auto", 2 << 30, False, "none")[0] is False
    assert resolve_cache("auto", 10, True, "none")[0] is False  # mixed datasets stream
    assert resolve_cache("auto", 10, False, "mirrored")[0] is False
    assert resolve_cache(True, 2 << 30, False, "none") == (True, "training.cache")
    assert resolve_cache(False, 10, False, "none") == (False, "training.cache")
    monkeypatch.setattr(execution, "_available_memory", lambda: 200 << 20)  # a quarter of what is free
    assert resolve_cache("auto", 60 << 20, False, "none")[0] is False


def test_jit_auto_follows_the_devices_and_explicit_values_are_kept(monkeypatch):
    cpu, gpu = tf.config.PhysicalDevice("/physical_device:CPU:0", "CPU"), tf.config.PhysicalDevice("g", "GPU")
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda *_: [cpu])
    assert resolve_jit_compile("auto", "none") == (
        False,
        "auto: CPU only, where compiling costs more than it saves on short runs",
    )
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda *_: [cpu, gpu])
    assert resolve_jit_compile("auto", "none") == (True, "auto: an accelerator is present")
    assert resolve_jit_compile("auto", "mirrored")[0] is False
    assert resolve_jit_compile(True, "none") == (True, "training.jit_compile")
    assert resolve_jit_compile("auto", "none", ["text"]) == (False, "auto: not with the TF Hub encoder of text")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("cache", "yes", "expected auto or true/false, got 'yes'"),
        ("steps_per_execution", "many", "expected auto or an integer, got 'many'"),
        ("steps_per_execution", 0, "expected a positive integer, got 0"),
        ("jit_compile", "on", "expected auto or true/false, got 'on'"),
    ],
)
def test_bad_execution_settings_are_config_errors(key, value, message):
    raw = {
        "data": {"source": "demo"},
        "modalities": {"numbers": {"type": "numeric", "columns": ["weight_kg"]}},
        "tasks": {"price": {"type": "regression", "label": "price"}},
        "training": {key: value},
    }
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def _cached_stream(rows: int, batch_size: int, skip: int = 0, repeat: bool = True):
    from keras_mtmm.data.pipeline import _batches

    examples = tf.data.Dataset.from_tensor_slices({"x": tf.range(rows), "y": tf.range(rows) * 10})
    return _batches(examples, lambda e: e, rows, batch_size, True, 5, rows, repeat, True, skip)


def test_the_cache_reshuffles_examples_not_whole_batches_and_resumes_mid_stream():
    rows, batch_size, passes = 50, 8, 7  # 7 batches a pass, the last one of 2 rows
    stream = [b for b in _cached_stream(rows, batch_size).take(passes * 3).as_numpy_iterator()]
    for batch in stream:
        np.testing.assert_array_equal(batch["y"], batch["x"] * 10)  # the columns of a row stay together
    for p in range(3):
        one_pass = stream[p * passes : (p + 1) * passes]
        assert sorted(np.concatenate([b["x"] for b in one_pass]).tolist()) == list(range(rows))
        assert [len(b["x"]) for b in one_pass] == [8] * 6 + [2]
    first, second = ({frozenset(b["x"].tolist()) for b in stream[p * passes : (p + 1) * passes]} for p in (0, 1))
    assert first != second, "every pass draws new batches, not the same batches in another order"
    resumed = [b["x"].tolist() for b in _cached_stream(rows, batch_size, skip=10).take(11).as_numpy_iterator()]
    assert resumed == [b["x"].tolist() for b in stream[10:21]]  # a resumed run continues the same stream


def test_an_unrepeated_cache_is_one_pass_reshuffled_at_every_iteration():
    dataset = _cached_stream(20, 6, repeat=False)
    passes = [np.concatenate([b["x"] for b in dataset.as_numpy_iterator()]).tolist() for _ in range(2)]
    assert all(sorted(p) == list(range(20)) for p in passes) and passes[0] != passes[1]


def test_a_run_records_what_it_chose(tiny_run):
    """The session's tiny demo run: 144 rows (a few KiB preprocessed), 5 steps per epoch."""
    import json

    from keras_mtmm.training.execution import ExecutionPlan

    plan = json.loads((tiny_run.run_dir / "metadata.json").read_text())["execution"]
    assert plan["cache"] is True and plan["steps_per_execution"] == 1 and plan["jit_compile"] is False
    assert plan["deterministic"] is True and plan["reasons"]["cache"].startswith("auto: ")
    line = ExecutionPlan(**plan).describe()
    assert line.startswith("execution: cache on (auto: ") and "1 step per execution (auto: an epoch of 5" in line


def test_an_epoch_pass_dataset_gives_the_streams_pass_of_its_epoch_and_ends_with_it():
    from keras_mtmm.data.pipeline import _batches

    rows, batch_size, passes = 50, 8, 7
    stream = [b["x"].tolist() for b in _cached_stream(rows, batch_size).take(passes * 3).as_numpy_iterator()]
    number = tf.Variable(0, dtype=tf.int64)
    examples = tf.data.Dataset.from_tensor_slices({"x": tf.range(rows), "y": tf.range(rows) * 10})
    dataset = _batches(examples, lambda e: e, rows, batch_size, True, 5, rows, False, True, 0, number)
    assert int(dataset.cardinality()) == passes  # Keras knows the epoch's length
    for epoch in (2, 0, 1):  # read when each iteration starts, in any order (a resumed run starts later)
        number.assign(epoch)
        assert [b["x"].tolist() for b in dataset.as_numpy_iterator()] == stream[epoch * passes : (epoch + 1) * passes]


@pytest.mark.parametrize(
    ("setting", "steps_per_epoch", "expected"),
    [("auto", 438, 32), ("auto", MIN_STEPS_FOR_MULTI - 1, 1), (7, 438, 7), (64, 100, 64)],
)
def test_with_one_dataset_per_epoch_the_steps_per_execution_need_not_divide_it(setting, steps_per_epoch, expected):
    steps, reason = resolve_steps_per_execution(setting, steps_per_epoch, 0, "none", epoch_passes=True)
    assert steps == expected, reason


def test_an_execution_that_does_not_divide_the_epoch_trains_the_epochs_steps_exactly(
    tmp_path, tiny_config_factory, tiny_run
):
    """144 training rows, batch 32: 5 steps an epoch, as 2 executions of 3 steps, the second stopping at 2.

    The same steps on the same batches as the session's tiny run (1 step per execution): the same losses.
    """
    import json

    from keras_mtmm.training.run import train

    result = train(
        tiny_config_factory("training.steps_per_execution=3"), output_dir=tmp_path / "run", export=False, verbose=0
    )
    plan = json.loads((result.run_dir / "metadata.json").read_text())["execution"]
    assert plan["epoch_passes"] is True and plan["steps_per_execution"] == 3
    assert int(result.training_model.optimizer.iterations.numpy()) == 2 * 5
    reference = json.loads((tiny_run.run_dir / "metadata.json").read_text())["execution"]
    assert reference["steps_per_execution"] == 1
    for key in ("loss", "val_loss", "shape_loss", "price_loss"):
        np.testing.assert_allclose(result.history[key], tiny_run.history[key], rtol=1e-5, err_msg=key)
