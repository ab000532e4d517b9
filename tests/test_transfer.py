"""Δm against single-task baselines: golden numbers worked out by hand, skips and errors."""

from __future__ import annotations

import doctest

import pytest

from keras_mtmm import transfer
from keras_mtmm.transfer import HIGHER_IS_BETTER, compare, format_comparison, metric_direction


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
    assert set(HIGHER_IS_BETTER) == {"accuracy", "auc", "top_k", "f1_micro", "f1_macro", "loss", "mae", "rmse"}
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
