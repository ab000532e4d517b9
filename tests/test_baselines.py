"""Single-task baselines and Δm end to end: `mtmm baselines`, then `evaluate.py --baselines`."""

from __future__ import annotations

import json

import pytest

from keras_mtmm.baselines import single_task_config, train_baselines
from keras_mtmm.evaluation import evaluate_model


def test_single_task_config_keeps_everything_but_the_other_tasks(tiny_config_factory):
    config = tiny_config_factory("weighting.strategy=pcgrad", "tasks.price.weight=0.3")
    single = single_task_config(config, "price")
    assert list(single.tasks) == ["price"] and single.tasks["price"].weight == 1.0
    assert single.weighting.strategy == "static"  # gradient strategies need two tasks
    assert single.modalities == config.modalities and single.sharing == config.sharing
    assert single.name == "demo_price"
    assert list(config.tasks) == ["shape", "premium", "price"], "the original config is untouched"


def test_evaluate_with_baselines_reports_delta_m(tiny_run, tiny_config_factory, tmp_path):
    folder = tmp_path / "baselines"
    # One step each: Δm's arithmetic is checked against the baselines' own scores, whatever they learned.
    results = train_baselines(tiny_config_factory("training.epochs=1", "training.steps_per_epoch=1"), folder)
    assert sorted(results) == ["premium", "price", "shape"]
    output = tmp_path / "metrics.json"
    report = evaluate_model(tiny_run.export_path, baselines=folder, output=output)
    transfer = json.loads(output.read_text())["transfer"]
    assert transfer == report["transfer"] and transfer["form"] == "libmtl"
    for task, result in results.items():
        single = result.metrics["tasks"][task]  # the baseline scored itself on the same test split
        for metric, values in transfer["tasks"][task]["metrics"].items():
            assert values["single"] == pytest.approx(single[metric], rel=1e-4, abs=1e-6), (task, metric)
            assert values["mtl"] == pytest.approx(report["tasks"][task][metric], rel=1e-9)
    deltas = [transfer["tasks"][t]["delta"] for t in transfer["tasks"]]
    assert transfer["delta_m"] == pytest.approx(sum(deltas) / len(deltas))
    assert transfer["negative_transfer"] == [t for t in transfer["tasks"] if transfer["tasks"][t]["delta"] < 0]


def test_missing_baseline_is_a_user_error(tiny_run, tmp_path):
    from keras_mtmm.errors import UserError

    with pytest.raises(UserError, match="no single-task baseline for task"):
        evaluate_model(tiny_run.export_path, baselines=tmp_path, quiet=True)
