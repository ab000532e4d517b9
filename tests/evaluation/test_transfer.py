"""Δm against single-task baselines: golden numbers worked out by hand, skips and errors."""

from __future__ import annotations

import doctest

import pytest

from keras_mtmm.evaluation import transfer
from keras_mtmm.evaluation.transfer import HIGHER_IS_BETTER, compare, format_comparison, metric_direction


def report(tasks: dict[str, dict], model: str = "m") -> dict:
    """A metrics report in the project's format around per-task entries."""
    total = sum(entry.get("loss", 0.0) or 0.0 for entry in tasks.values())
    return {"model": model, "split": "test", "examples": 100, "loss": total, "weights": {}, "tasks": tasks}


def baselines_for(tasks: dict[str, dict]) -> dict[str, dict]:
    """One single-task report per task, each holding just that task."""
    return {task: report({task: entry}, model=f"single-{task}") for task, entry in tasks.items()}


# Two tasks: A (classification) and B (regression).
MTL = report(
    {
        "A": {"loss": 0.30, "accuracy": 0.90, "auc": 0.95, "labelled": 100},
        "B": {"loss": 4.00, "mae": 2.0, "labelled": 80},
    }
)
SINGLE = baselines_for(
    {
        "A": {"loss": 0.40, "accuracy": 0.80, "auc": 0.95, "labelled": 100},
        "B": {"loss": 6.25, "mae": 2.5, "labelled": 80},
    }
)


def test_golden_libmtl():
    # A/accuracy (higher better): +(0.90 - 0.80) / 0.80 * 100 = +0.10 / 0.80 * 100 = +12.5
    # A/auc      (higher better): +(0.95 - 0.95) / 0.95 * 100 = 0.0
    # task A delta = (12.5 + 0.0) / 2 = 6.25
    # B/mae      (lower better):  -(2.0 - 2.5) / 2.5 * 100 = +0.5 / 2.5 * 100 = +20.0
    # task B delta = 20.0 / 1 = 20.0
    # Δm (LibMTL, mean over tasks) = (6.25 + 20.0) / 2 = 13.125   (higher is better)
    result = compare(MTL, SINGLE)
    assert result["form"] == "libmtl"
    a, b = result["tasks"]["A"], result["tasks"]["B"]
    assert list(a["metrics"]) == ["accuracy", "auc"]  # loss and labelled left out by default
    assert a["metrics"]["accuracy"] == {"mtl": 0.90, "single": 0.80, "relative_gain": pytest.approx(12.5)}
    assert a["metrics"]["auc"]["relative_gain"] == pytest.approx(0.0)
    assert a["delta"] == pytest.approx(6.25)
    assert b["metrics"]["mae"]["relative_gain"] == pytest.approx(20.0)
    assert b["delta"] == pytest.approx(20.0)
    assert result["delta_m"] == pytest.approx(13.125)
    assert result["negative_transfer"] == []
    assert not a["negative_transfer"] and not b["negative_transfer"]
    assert result["skipped"] == []


def test_golden_flat():
    # Same gains, but each of the K = 3 metrics counts once and the sign is flipped:
    # accuracy: (−1)^1 (0.90 − 0.80) / 0.80 = −0.125
    # auc:      (−1)^1 (0.95 − 0.95) / 0.95 =  0.0
    # mae:      (−1)^0 (2.0 − 2.5) / 2.5    = −0.2
    # Δm_flat = 100 / 3 * (−0.125 + 0.0 − 0.2) = −32.5 / 3 = −10.8333...   (LOWER is better)
    result = compare(MTL, SINGLE, form="flat")
    assert result["form"] == "flat"
    assert result["delta_m"] == pytest.approx(-32.5 / 3)
    assert result["delta_m"] == pytest.approx(-10.833333333)
    # Task-level deltas keep the higher-is-better convention in both forms.
    assert result["tasks"]["A"]["delta"] == pytest.approx(6.25)
    assert result["tasks"]["B"]["delta"] == pytest.approx(20.0)


def test_negative_transfer_flagged_on_the_right_task():
    # A/accuracy: +(0.72 − 0.80) / 0.80 * 100 = −10.0;  A/auc: 0.88 vs 0.88 → 0.0
    # task A delta = (−10.0 + 0.0) / 2 = −5.0  → negative transfer
    # B/rmse (lower better): −(1.5 − 2.0) / 2.0 * 100 = +25.0 → task B delta = +25.0
    # Δm LibMTL = (−5.0 + 25.0) / 2 = +10.0
    # Δm flat   = −(−10.0 + 0.0 + 25.0) / 3 = −15.0 / 3 = −5.0
    mtl = report({"A": {"accuracy": 0.72, "auc": 0.88}, "B": {"rmse": 1.5}})
    single = baselines_for({"A": {"accuracy": 0.80, "auc": 0.88}, "B": {"rmse": 2.0}})
    result = compare(mtl, single)
    assert result["tasks"]["A"]["delta"] == pytest.approx(-5.0)
    assert result["tasks"]["A"]["negative_transfer"] is True
    assert result["tasks"]["B"]["delta"] == pytest.approx(25.0)
    assert result["tasks"]["B"]["negative_transfer"] is False
    assert result["negative_transfer"] == ["A"]
    assert result["delta_m"] == pytest.approx(10.0)
    assert compare(mtl, single, form="flat")["delta_m"] == pytest.approx(-5.0)


def test_none_and_zero_baseline_are_skipped_and_reported():
    # A/auc is None in the MTL report; B/mae has a single-task value of 0.
    # Left: A/accuracy +12.5 → A delta 12.5; B/rmse −(1.0 − 2.0)/2.0*100 = +50 → B delta 50.
    # Δm LibMTL = (12.5 + 50) / 2 = 31.25
    mtl = report({"A": {"accuracy": 0.90, "auc": None}, "B": {"mae": 1.0, "rmse": 1.0}})
    single = baselines_for({"A": {"accuracy": 0.80, "auc": 0.70}, "B": {"mae": 0.0, "rmse": 2.0}})
    result = compare(mtl, single)
    assert list(result["tasks"]["A"]["metrics"]) == ["accuracy"]
    assert list(result["tasks"]["B"]["metrics"]) == ["rmse"]
    skipped = {(s["task"], s["metric"]): s["reason"] for s in result["skipped"]}
    assert set(skipped) == {("A", "auc"), ("B", "mae")}
    assert "None" in skipped[("A", "auc")]
    assert "0" in skipped[("B", "mae")]
    assert result["delta_m"] == pytest.approx(31.25)
    text = format_comparison(result)
    assert "skipped A/auc" in text and "skipped B/mae" in text


def test_metric_in_only_one_report_is_skipped_by_default():
    mtl = report({"A": {"accuracy": 0.90, "f1_macro": 0.5}})
    single = baselines_for({"A": {"accuracy": 0.80, "top_k": 0.9}})
    result = compare(mtl, single)
    assert list(result["tasks"]["A"]["metrics"]) == ["accuracy"]
    assert {(s["metric"], s["reason"]) for s in result["skipped"]} == {
        ("f1_macro", "only in the multi-task report"),
        ("top_k", "only in the single-task report"),
    }


def test_explicit_metrics_can_include_loss():
    # A/accuracy: +12.5 (as above); A/loss (lower better): −(0.30 − 0.40) / 0.40 * 100 = +25.0
    # task A delta = (12.5 + 25.0) / 2 = 18.75; only task A is compared → Δm LibMTL = 18.75
    # flat: −(12.5 + 25.0) / 2 = −18.75
    selection = {"A": ["accuracy", "loss"]}
    result = compare(MTL, SINGLE, metrics=selection)
    assert list(result["tasks"]) == ["A"]
    assert list(result["tasks"]["A"]["metrics"]) == ["accuracy", "loss"]
    assert result["tasks"]["A"]["metrics"]["loss"]["relative_gain"] == pytest.approx(25.0)
    assert result["delta_m"] == pytest.approx(18.75)
    assert compare(MTL, SINGLE, metrics=selection, form="flat")["delta_m"] == pytest.approx(-18.75)


def test_explicit_metric_missing_from_a_report_raises():
    with pytest.raises(ValueError, match=r"task 'B'.*'rmse'.*multi-task"):
        compare(MTL, SINGLE, metrics={"B": ["rmse"]})


def test_missing_baseline_names_the_task():
    with pytest.raises(ValueError, match=r"task 'B': no single-task baseline"):
        compare(MTL, {"A": SINGLE["A"]})


def test_baseline_without_the_task_names_it():
    with pytest.raises(ValueError, match=r"task 'B'.*baseline report has no such task"):
        compare(MTL, {"A": SINGLE["A"], "B": SINGLE["A"]})


def test_task_without_comparable_metric_names_it():
    mtl = report({"A": {"accuracy": 0.9}, "B": {"mae": None, "labelled": 0}})
    single = baselines_for({"A": {"accuracy": 0.8}, "B": {"mae": 2.0, "labelled": 0}})
    with pytest.raises(ValueError, match=r"task 'B': no comparable metric.*None"):
        compare(mtl, single)


def test_unknown_form_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown form 'nash'.*libmtl, flat"):
        compare(MTL, SINGLE, form="nash")


def test_metric_direction():
    assert metric_direction("accuracy") is True
    assert metric_direction("f1_micro") is True
    assert metric_direction("rmse") is False
    from keras_mtmm.registry import TASK_TYPES

    every_metric = {"loss"} | {m for name in TASK_TYPES.names() for m in TASK_TYPES.get(name).metric_names}
    assert set(HIGHER_IS_BETTER) == every_metric  # each task type's metric has a direction, and nothing else
    with pytest.raises(ValueError, match=r"unknown metric 'iou'"):
        metric_direction("iou")


def test_unknown_metric_in_report_raises():
    mtl = report({"A": {"iou": 0.5}})
    single = baselines_for({"A": {"iou": 0.4}})
    with pytest.raises(ValueError, match=r"unknown metric 'iou'"):
        compare(mtl, single)


def test_format_comparison_table():
    text = format_comparison(compare(MTL, SINGLE))
    lines = text.splitlines()
    assert lines[0].split() == ["task", "metric", "MTL", "single", "gain", "%"]
    assert any(line.split()[:5] == ["A", "accuracy", "0.9", "0.8", "+12.50"] for line in lines)
    assert any(line.split()[:5] == ["B", "mae", "2", "2.5", "+20.00"] for line in lines)
    assert "NEGATIVE TRANSFER" not in text
    assert "Δm = +13.12%" in lines[-1] or "Δm = +13.13%" in lines[-1]
    assert "LibMTL" in lines[-1] and "HIGHER is better" in lines[-1]

    flat = format_comparison(compare(MTL, SINGLE, form="flat")).splitlines()[-1]
    assert "Δm = -10.83%" in flat and "flat" in flat and "LOWER is better" in flat


def test_format_flags_negative_transfer_on_the_task_row():
    mtl = report({"A": {"accuracy": 0.72}, "B": {"rmse": 1.5}})
    single = baselines_for({"A": {"accuracy": 0.80}, "B": {"rmse": 2.0}})
    lines = format_comparison(compare(mtl, single)).splitlines()
    flagged = [line for line in lines if "NEGATIVE TRANSFER" in line]
    assert len(flagged) == 1 and flagged[0].startswith("A ")


def test_doctests():
    assert doctest.testmod(transfer).failed == 0


def _report(**task_values):
    return {"tasks": {task: {"accuracy": value} for task, value in task_values.items()}}


def test_over_seeds_delta_m_is_the_mean_and_std_of_the_seeds_and_flags_beyond_two_standard_errors():
    from keras_mtmm.evaluation.transfer_seeds import compare_over_seeds

    # Task a: gains -10, -12, -8 % (mean -10, std 2, se 1.155): worse beyond the noise, flagged.
    # Task b: gains -30, +20, -20 % (mean -10, std 26.46, se 15.3): within the noise, not flagged.
    mtl = [_report(a=0.90, b=0.70), _report(a=0.88, b=1.20), _report(a=0.92, b=0.80)]
    single = [{t: _report(a=1.0, b=1.0) for t in "ab"}] * 3
    result = compare_over_seeds(mtl, single, seeds={"multi_task": [0, 1, 2], "single_task": [0, 1, 2]})
    assert result["comparisons"] == 3 and result["seeds"]["multi_task"] == [0, 1, 2]
    a, b = result["tasks"]["a"], result["tasks"]["b"]
    assert a["delta_per_seed"] == pytest.approx([-10, -12, -8]) and b["delta_per_seed"] == pytest.approx([-30, 20, -20])
    assert a["delta"] == pytest.approx(-10) and a["delta_std"] == pytest.approx(2.0)
    assert a["delta_se"] == pytest.approx(2 / 3**0.5) and b["delta_std"] == pytest.approx(700**0.5)
    assert a["negative_transfer"] and not b["negative_transfer"] and result["negative_transfer"] == ["a"]
    assert result["delta_m_per_seed"] == pytest.approx([-20, 4, -14])
    assert result["delta_m"] == pytest.approx(-10) and result["delta_m_std"] == pytest.approx(156**0.5)
    assert a["metrics"]["accuracy"]["mtl"] == pytest.approx(0.9) and a["metrics"]["accuracy"]["single"] == 1.0
    assert "-2 standard errors over 3 seeds" in result["negative_transfer_rule"]
    text = format_comparison(result)
    assert "Δm = -10.00 ± 12.49% (mean ± std over 3 seeds; LibMTL form" in text
    assert "NEGATIVE TRANSFER" in text.splitlines()[2] or "NEGATIVE TRANSFER" in text
    b_row = next(line for line in text.splitlines() if line.startswith("b") and "task delta" in line)
    assert "worse, within the noise" in b_row and "-10.00 ± 26.46" in b_row


def test_over_seeds_one_seed_each_side_is_compare_and_says_so():
    from keras_mtmm.evaluation.transfer_seeds import compare_over_seeds

    mtl, single = _report(a=0.9), {"a": _report(a=1.0)}
    result = compare_over_seeds([mtl], [single])
    assert result["delta_m"] == compare(mtl, single)["delta_m"] == pytest.approx(-10)
    assert result["negative_transfer"] == ["a"] and "delta_m_std" not in result
    assert "no noise estimate" in result["negative_transfer_rule"]
    assert "Δm = -10.00% (one seed; LibMTL form" in format_comparison(result)


def test_over_seeds_pairs_seed_by_seed_and_refuses_seeds_one_side_lacks():
    from keras_mtmm.evaluation.transfer_seeds import compare_over_seeds, pair_by_seed

    mtl = {43: _report(a=0.9), 42: _report(a=0.8)}
    single = {42: {"a": _report(a=1.0)}, 43: {"a": _report(a=0.9)}}
    seeds, mtl_reports, single_reports = pair_by_seed(mtl, single)
    assert seeds == [42, 43] and compare_over_seeds(mtl_reports, single_reports)["delta_m_per_seed"] == [
        pytest.approx(-20),
        pytest.approx(0),
    ]
    # One run each side (a baselines folder without seeds): paired whatever the seeds, as before seeds existed.
    assert pair_by_seed({42: mtl[42]}, {None: single[42]})[0] == [42]
    with pytest.raises(ValueError, match=r"multi-task runs have seeds \[42\] and the baselines \[42, 43\]"):
        pair_by_seed({42: mtl[42]}, single)
    with pytest.raises(ValueError, match="give one pair per seed"):
        compare_over_seeds([_report(a=0.9)] * 2, [{"a": _report(a=1.0)}] * 3)


def test_seed_folders_are_found_and_a_plain_baselines_folder_is_one_seed(tmp_path):
    from keras_mtmm.evaluation.transfer_seeds import baseline_seed_folders
    from keras_mtmm.run_folder import RunFolder, seed_of

    assert baseline_seed_folders(tmp_path) == {None: tmp_path}
    for seed in (43, 42, 100):
        (tmp_path / f"seed-{seed}").mkdir()
    (tmp_path / "seed-x").mkdir()
    assert list(baseline_seed_folders(tmp_path)) == [42, 43, 100]
    assert seed_of(tmp_path / "seed-7") == 7 and seed_of(tmp_path / "seed-x") is None
    assert RunFolder(tmp_path).other_seed_runs() == {}
    (tmp_path / "seeds" / "seed-5").mkdir(parents=True)
    assert {s: r.path for s, r in RunFolder(tmp_path).other_seed_runs().items()} == {5: tmp_path / "seeds" / "seed-5"}
    assert RunFolder(tmp_path).seed_run(5).path == tmp_path / "seeds" / "seed-5"
