"""`traced_once`: one trace per model whatever the batch sizes, and no retracing warnings when many models
are scored in a row (mtmm baselines, evaluate.py --baselines)."""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from keras_mtmm.evaluation.tracing import traced_once


def _score_models(make, count: int = 8) -> list:
    """Score `count` "models" (each its own scale) over batches of 5, 5 and 3 rows, as scoring does."""

    def model(scale: float):
        return lambda raw: {"y": raw["x"] * scale}  # every model's function has this same code

    results = []
    for scale in range(1, count + 1):
        run = make(model(float(scale)))
        for rows in (5, 5, 3):
            results.append(run({"x": tf.constant(np.ones((rows, 2), np.float32))})["y"].numpy())
    return results


def _retracing_warnings(caplog, make) -> tuple[int, list]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        results = _score_models(make)
    return sum("triggered tf.function retracing" in r.getMessage() for r in caplog.records), results


def test_scoring_many_models_prints_no_retracing_warning(caplog):
    warned, results = _retracing_warnings(caplog, lambda fn: tf.function(fn, reduce_retracing=True))
    assert warned > 0  # what scoring did before: one tf.function per model from the same code
    quiet, same = _retracing_warnings(caplog, traced_once)
    assert quiet == 0
    for a, b in zip(results, same):
        np.testing.assert_array_equal(a, b)
    assert same[-1].shape == (3, 2) and same[-1][0, 0] == 8.0


def test_a_model_is_traced_once_for_every_batch_size():
    traces = []

    def model(raw):
        traces.append(1)  # runs while tracing only
        return {"y": raw["x"] + 1.0}

    run = traced_once(model)
    for rows in (4, 1, 7, 0):
        assert run({"x": tf.constant(np.zeros((rows, 3), np.float32))})["y"].shape == (rows, 3)
    assert len(traces) == 1
