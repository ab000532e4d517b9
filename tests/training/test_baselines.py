"""Single-task baselines and Δm end to end: `mtmm baselines`, then `evaluate.py --baselines`."""

from __future__ import annotations

import json

import pytest

from keras_mtmm.evaluation.evaluate import evaluate_model
from keras_mtmm.evaluation.transfer import compare
from keras_mtmm.training.baselines import single_task_config, train_baselines


def test_single_task_config_keeps_everything_but_the_other_tasks(tiny_config_factory):
    config = tiny_config_factory("weighting.strategy=pcgrad", "tasks.price.weight=0.3")
    single = single_task_config(config, "price")
    assert list(single.tasks) == ["price"] and single.tasks["price"].weight == 1.0
    assert single.weighting.strategy == "static"  # gradient strategies need two tasks
    assert single.modalities == config.modalities and single.sharing == config.sharing
    assert single.name == "demo_price"
    assert list(config.tasks) == ["shape", "premium", "price"], "the original config is untouched"


def test_the_report_pairs_the_runs_metrics_seed_by_seed(tiny_run, tmp_path):
    """`mtmm report --baselines` on a run trained with --seeds 2: each seed's metrics.json with its baselines'."""
    import shutil

    from keras_mtmm.errors import UserError
    from keras_mtmm.report.run import Run
    from keras_mtmm.report.sections import load_transfer

    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run, ignore=shutil.ignore_patterns("*.keras", "logs", "backup"))
    tasks = list(json.loads((run / "metrics.json").read_text())["tasks"])
    assert json.loads((run / "metadata.json").read_text())["reproducibility"]["seed"] == 42

    def metrics(value):
        return {"tasks": {task: {"accuracy" if task != "price" else "mae": value} for task in tasks}}

    (run / "metrics.json").write_text(json.dumps(metrics(0.9)))
    (run / "seeds" / "seed-43").mkdir(parents=True)
    (run / "seeds" / "seed-43" / "metrics.json").write_text(json.dumps(metrics(0.8)))
    for seed in (42, 43):
        for task in tasks:
            (tmp_path / "b" / f"seed-{seed}" / task).mkdir(parents=True)
            (tmp_path / "b" / f"seed-{seed}" / task / "metrics.json").write_text(json.dumps(metrics(1.0)))
    transfer, source = load_transfer(Run(run), tmp_path / "b")
    assert transfer["seeds"] == {"seeds": [42, 43]} and transfer["comparisons"] == 2
    # accuracy 0.9 and 0.8 vs 1.0: gains -10, -20 %; MAE 0.9 and 0.8 vs 1.0 (lower is better): +10, +20 %.
    assert transfer["tasks"]["shape"]["delta_per_seed"] == pytest.approx([-10, -20])
    assert transfer["tasks"]["price"]["delta_per_seed"] == pytest.approx([10, 20])
    assert transfer["delta_m_per_seed"] == pytest.approx([-10 / 3, -20 / 3])
    assert transfer["delta_m_std"] == pytest.approx(10 / 3 / 2**0.5)
    shutil.rmtree(tmp_path / "b" / "seed-43")
    with pytest.raises(UserError, match=r"seeds \[42, 43\] and the baselines \[42\]"):
        load_transfer(Run(run), tmp_path / "b")


@pytest.mark.slow  # 7 training runs, about 40 s on 2 cores
def test_two_seeds_each_side_give_delta_m_mean_and_std_seed_by_seed(tiny_run, tiny_config_factory, tmp_path):
    """`train.py --seeds 2` and `mtmm baselines --seeds 2`, then `evaluate.py --baselines`: each seed's two sides
    on that seed's test split (one step per extra run: the arithmetic is checked, not what they learned)."""
    import shutil

    from keras_mtmm.training.baselines import train_other_seeds

    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run)  # the session's run is seed 42
    config = tiny_config_factory("training.epochs=1", "training.steps_per_epoch=1")
    train_other_seeds(config, run, [43])
    folder = tmp_path / "baselines"
    results = train_baselines(config, folder, seeds=[42, 43])
    assert sorted(p.name for p in folder.iterdir()) == ["seed-42", "seed-43"]
    assert sorted(p.name for p in (folder / "seed-43").iterdir()) == ["premium", "price", "shape"]
    output = tmp_path / "metrics.json"
    report = evaluate_model(run / "best.keras", baselines=folder, output=output)
    transfer = json.loads(output.read_text())["transfer"]
    assert transfer == report["transfer"] and transfer["form"] == "libmtl" and transfer["comparisons"] == 2
    assert transfer["seeds"]["seeds"] == [42, 43]
    mtl = {42: report, 43: json.loads((run / "seeds" / "seed-43" / "metrics.json").read_text())}
    # Every run scored itself on its seed's test split when it trained: the same rows as the comparison's.
    per_seed = [compare(mtl[seed], {t: r.metrics for t, r in results[seed].items()}) for seed in (42, 43)]
    for task in ("premium", "price", "shape"):
        for metric, values in transfer["tasks"][task]["metrics"].items():
            single = [c["tasks"][task]["metrics"][metric]["single"] for c in per_seed]
            assert values["single"] == pytest.approx(sum(single) / 2, rel=1e-4, abs=1e-6), (task, metric)
    deltas = [c["delta_m"] for c in per_seed]
    assert transfer["delta_m_per_seed"] == pytest.approx(deltas, rel=1e-3, abs=1e-4)
    assert transfer["delta_m"] == pytest.approx(sum(deltas) / 2, rel=1e-3, abs=1e-4)
    assert transfer["delta_m_std"] == pytest.approx(abs(deltas[0] - deltas[1]) / 2**0.5, rel=1e-3, abs=1e-4)
    for task, entry in transfer["tasks"].items():
        assert entry["negative_transfer"] == (entry["delta"] + 2 * entry["delta_se"] < 0), task
    from keras_mtmm.errors import UserError

    (folder / "seed-43").rename(tmp_path / "away")  # a seed the baselines lack is refused, not compared across
    with pytest.raises(UserError, match=r"seeds \[42, 43\] and the baselines \[42\]"):
        evaluate_model(run / "best.keras", baselines=folder, quiet=True)


def test_missing_baseline_is_a_user_error(tiny_run, tmp_path):
    from keras_mtmm.errors import UserError

    with pytest.raises(UserError, match="no single-task baseline for task"):
        evaluate_model(tiny_run.export_path, baselines=tmp_path, quiet=True)
