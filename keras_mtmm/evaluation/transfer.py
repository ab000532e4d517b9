"""Transfer between tasks: the multi-task model against single-task baselines (Δm).

Δm, introduced by Maninis et al., "Attentive Single-Tasking of Multiple Tasks"
(CVPR 2019), is the standard multi-task score: the mean relative change of each
metric of the multi-task model against the same metric of a model trained on
that task alone. Two forms are in use, and they differ in averaging AND sign:

- ``"libmtl"`` (Lin & Zhang, "LibMTL: A Python Library for Multi-Task
  Learning", JMLR 2023), HIGHER is better, in %::

      Δm = 100 · (1/T) Σ_t (1/M_t) Σ_m (−1)^{l_m} (M_mtl − M_single) / M_single

  with l_m = 0 where higher is better and 1 where lower is better: each task
  counts once, whatever its number of metrics.
- ``"flat"`` (as reported by CAGrad, Liu et al. NeurIPS 2021, and Nash-MTL,
  Navon et al. ICML 2022), LOWER is better, in %::

      Δm_flat = (100 / K) Σ_k (−1)^{δ_k} (M_mtl,k − M_single,k) / M_single,k

  with K the total number of metrics and δ_k = 1 where higher is better: each
  metric counts once, and an improvement gives a NEGATIVE number.

Inputs are the project's metrics reports (see :mod:`keras_mtmm.evaluation.scoring`)::

    {"model": ..., "split": "test", "examples": N, "loss": total, "weights": {...},
     "tasks": {"<task>": {"loss": x, "<metric>": y, ..., "labelled": n}, ...}}
"""

from __future__ import annotations

import math
from typing import Any

FORMS: tuple[str, ...] = ("libmtl", "flat")

HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "auc": True,
    "top_k": True,
    "f1_micro": True,
    "f1_macro": True,
    "entity_f1": True,
    "token_accuracy": True,
    "masked_accuracy": True,
    "loss": False,
    "mae": False,
    "rmse": False,
}

# Keys of a task's entry in a metrics report that are not metrics.
_NOT_METRICS: frozenset[str] = frozenset({"labelled"})


def metric_direction(name: str) -> bool:
    """Whether a higher value of metric `name` is better.

    Args:
        name: a metric name as it appears in a metrics report, e.g. ``"auc"``.

    Returns:
        True where higher is better (accuracy, AUC, F1, top-k), False where lower
        is better (loss, MAE, RMSE).

    Raises:
        ValueError: `name` is not a known metric (its direction is unknown).

    Example:
        >>> metric_direction("mae")
        False
    """
    try:
        return HIGHER_IS_BETTER[name]
    except KeyError:
        known = ", ".join(sorted(HIGHER_IS_BETTER))
        raise ValueError(
            f"unknown metric {name!r}: its direction (higher or lower is better) is unknown; known metrics: {known}"
        ) from None


def relative_gain(mtl: float, single: float, higher_is_better: bool) -> float:
    """Signed relative gain of the multi-task value over the single-task one, in %.

    ``100 · (−1)^{l} (mtl − single) / single`` with l = 0 where higher is better:
    positive means the multi-task model is better, whatever the metric's direction.

    Args:
        mtl: the multi-task model's value.
        single: the single-task baseline's value (non-zero).
        higher_is_better: the metric's direction (see :func:`metric_direction`).

    Example:
        >>> relative_gain(2.0, 2.5, higher_is_better=False)
        20.0
    """
    sign = 1.0 if higher_is_better else -1.0
    return 100.0 * sign * (mtl - single) / single


def compare(
    mtl: dict,
    baselines: dict[str, dict],
    metrics: dict[str, list[str]] | None = None,
    form: str = "libmtl",
) -> dict:
    """Compare a multi-task model's metrics with single-task baselines: per-task gains and Δm.

    Every task of `mtl` (or of `metrics`, when given) is compared with the report
    of its own single-task model, metric by metric. The relative gain of a metric
    is ``100 · (−1)^{l_m} (mtl − single) / single`` (positive = the multi-task
    model is better, whatever the direction); a task's ``delta`` is the mean of
    its gains (higher is better) and the task shows negative transfer when its
    delta is below 0.

    By default the metrics compared are those present in both reports, except
    ``labelled`` (a count) and ``loss``: per-task losses would be comparable, but
    the default follows LibMTL (Lin & Zhang, JMLR 2023), which scores the
    evaluation metrics; pass ``metrics={"task": ["loss", ...]}`` to include it.

    ``delta_m`` follows `form`:

    - ``"libmtl"``: mean over tasks of the task deltas; HIGHER is better.
    - ``"flat"`` (CAGrad, Nash-MTL): mean over ALL metrics, each counting once,
      with the sign FLIPPED: ``-mean(gains)``; LOWER is better, and a
      multi-task model better than its baselines gets a NEGATIVE Δm.

    Metrics whose value is None or not finite in either report, or whose
    baseline is 0 (division by zero), are skipped and listed under ``skipped``
    with the reason; by default, so are metrics found in only one report.

    Args:
        mtl: the metrics report of the multi-task model.
        baselines: task -> the metrics report of that task's single-task model
            (which has that task under ``"tasks"``).
        metrics: optional task -> metric names to compare; restricts the
            comparison to these tasks. Names must be in both reports.
        form: ``"libmtl"`` or ``"flat"``.

    Returns:
        ``{"form", "delta_m", "tasks": {task: {"metrics": {m: {"mtl", "single",
        "relative_gain"}}, "delta", "negative_transfer"}}, "negative_transfer":
        [tasks], "skipped": [{"task", "metric", "reason"}]}``.

    Raises:
        ValueError: `form` is unknown; a task has no baseline, is missing from a
            report or has no comparable metric; a metric's direction is unknown;
            a metric asked for in `metrics` is missing from a report.

    Example:
        >>> mtl = {"tasks": {"a": {"accuracy": 0.9, "labelled": 10}}}
        >>> single = {"tasks": {"a": {"accuracy": 0.8, "labelled": 10}}}
        >>> round(compare(mtl, {"a": single})["delta_m"], 6)
        12.5
    """
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; choose one of: {', '.join(FORMS)}")
    mtl_tasks = _report_tasks(mtl, "multi-task report")
    names = list(metrics) if metrics is not None else list(mtl_tasks)
    if not names:
        raise ValueError("no task to compare: the multi-task report has no tasks")

    tasks: dict[str, dict] = {}
    skipped: list[dict[str, str]] = []
    for task in names:
        wanted = None if metrics is None else metrics[task]
        tasks[task] = _compare_task(task, mtl_tasks, baselines, wanted, skipped)

    gains = [entry["relative_gain"] for result in tasks.values() for entry in result["metrics"].values()]
    if form == "libmtl":
        delta_m = mean([result["delta"] for result in tasks.values()])
    else:
        delta_m = -mean(gains)
    return {
        "form": form,
        "delta_m": delta_m,
        "tasks": tasks,
        "negative_transfer": [task for task, result in tasks.items() if result["negative_transfer"]],
        "skipped": skipped,
    }


def format_comparison(result: dict) -> str:
    """Render a :func:`compare` result as a plain-text table.

    One row per task and metric (multi-task value, single-task value, relative
    gain in %, positive = multi-task better), one row per task with its delta
    and a ``NEGATIVE TRANSFER`` flag, the skipped metrics, and the Δm line naming
    the form and which direction is better.

    Args:
        result: the dict returned by :func:`compare`.

    Example:
        >>> print(format_comparison(compare(mtl, baselines)))  # doctest: +SKIP
    """
    header = ("task", "metric", "MTL", "single", "gain %", "")
    rows: list[tuple[str, ...]] = [header]
    for task, entry in result["tasks"].items():
        for name, values in entry["metrics"].items():
            rows.append(
                (task, name, _number(values["mtl"]), _number(values["single"]), _gain(values["relative_gain"]), "")
            )
        flag = "NEGATIVE TRANSFER" if entry["negative_transfer"] else ""
        if not flag and entry["delta"] < 0 and "delta_se" in entry:
            flag = "worse, within the noise"
        gain = _gain(entry["delta"]) + (f" ± {entry['delta_std']:.2f}" if "delta_std" in entry else "")
        rows.append((task, "(task delta)", "", "", gain, flag))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [_row(row, widths) for row in rows]
    lines.insert(1, _row(tuple("-" * width for width in widths), widths))
    for skip in result.get("skipped", []):
        lines.append(f"skipped {skip['task']}/{skip['metric']}: {skip['reason']}")
    lines.append(_delta_m_line(result["form"], result["delta_m"], result.get("delta_m_std"), result.get("comparisons")))
    if "negative_transfer_rule" in result:
        lines.append(f"negative transfer: {result['negative_transfer_rule']}")
    return "\n".join(lines)


def _report_tasks(report: Any, who: str) -> dict[str, dict]:
    """The ``"tasks"`` mapping of a metrics report, or a ValueError naming `who`."""
    tasks = report.get("tasks") if isinstance(report, dict) else None
    if not isinstance(tasks, dict):
        raise ValueError(f"{who}: expected a metrics report with a 'tasks' mapping, got {type(report).__name__}")
    return tasks


def _task_reports(task: str, mtl_tasks: dict[str, dict], baselines: dict[str, dict]) -> tuple[dict, dict]:
    """The multi-task and single-task entries of `task`, or a ValueError naming it."""
    if task not in mtl_tasks:
        raise ValueError(f"task {task!r}: not in the multi-task report (tasks: {', '.join(mtl_tasks)})")
    if task not in baselines:
        raise ValueError(f"task {task!r}: no single-task baseline; pass baselines[{task!r}] = its metrics report")
    single_tasks = _report_tasks(baselines[task], f"task {task!r}: single-task baseline")
    if task not in single_tasks:
        raise ValueError(
            f"task {task!r}: the single-task baseline report has no such task (tasks: {', '.join(single_tasks)})"
        )
    return mtl_tasks[task], single_tasks[task]


def _default_metrics(task: str, mtl_entry: dict, single_entry: dict, skipped: list[dict[str, str]]) -> list[str]:
    """Metrics in both entries, less ``labelled`` and ``loss``; one-sided ones go to `skipped`."""
    excluded = _NOT_METRICS | {"loss"}
    for name in mtl_entry:
        if name not in excluded and name not in single_entry:
            skipped.append({"task": task, "metric": name, "reason": "only in the multi-task report"})
    for name in single_entry:
        if name not in excluded and name not in mtl_entry:
            skipped.append({"task": task, "metric": name, "reason": "only in the single-task report"})
    return [name for name in mtl_entry if name not in excluded and name in single_entry]


def _skip_reason(mtl_value: Any, single_value: Any) -> str | None:
    """Why a pair of values cannot be compared, or None when it can."""
    for who, value in (("multi-task", mtl_value), ("single-task", single_value)):
        if value is None:
            return f"{who} value is None (undefined)"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{who} value {value!r} is not a finite number"
    if single_value == 0:
        return "single-task value is 0 (relative gain divides by it)"
    return None


def _compare_task(
    task: str,
    mtl_tasks: dict[str, dict],
    baselines: dict[str, dict],
    wanted: list[str] | None,
    skipped: list[dict[str, str]],
) -> dict:
    """One task's per-metric gains, delta and negative-transfer flag."""
    mtl_entry, single_entry = _task_reports(task, mtl_tasks, baselines)
    if wanted is None:
        names = _default_metrics(task, mtl_entry, single_entry, skipped)
    else:
        names = list(wanted)
        for name in names:
            for who, entry in (("multi-task", mtl_entry), ("single-task", single_entry)):
                if name not in entry:
                    raise ValueError(f"task {task!r}: metric {name!r} is not in the {who} report")
    compared: dict[str, dict[str, float]] = {}
    for name in names:
        higher = metric_direction(name)
        mtl_value, single_value = mtl_entry[name], single_entry[name]
        reason = _skip_reason(mtl_value, single_value)
        if reason is not None:
            skipped.append({"task": task, "metric": name, "reason": reason})
            continue
        gain = relative_gain(float(mtl_value), float(single_value), higher)
        compared[name] = {"mtl": float(mtl_value), "single": float(single_value), "relative_gain": gain}
    if not compared:
        reasons = "; ".join(f"{s['metric']}: {s['reason']}" for s in skipped if s["task"] == task)
        raise ValueError(f"task {task!r}: no comparable metric" + (f" ({reasons})" if reasons else ""))
    delta = mean([entry["relative_gain"] for entry in compared.values()])
    return {"metrics": compared, "delta": delta, "negative_transfer": delta < 0}


def mean(values: list[float]) -> float:
    """Arithmetic mean of a non-empty list."""
    return sum(values) / len(values)


def _number(value: float) -> str:
    """A metric value, compactly."""
    return f"{value:.6g}"


def _gain(value: float) -> str:
    """A signed percentage."""
    return f"{value:+.2f}"


def _row(cells: tuple[str, ...], widths: list[int]) -> str:
    """Cells padded to `widths`: text left-aligned, numbers right-aligned."""
    aligned = [
        cell.ljust(width) if index < 2 or index == 5 else cell.rjust(width)
        for index, (cell, width) in enumerate(zip(cells, widths))
    ]
    return "  ".join(aligned).rstrip()


def _delta_m_line(form: str, delta_m: float, std: float | None = None, comparisons: int | None = None) -> str:
    """The Δm line: value (± std over seeds), form and which direction is better."""
    value = f"{_gain(delta_m)} ± {std:.2f}%" if std is not None else f"{_gain(delta_m)}%"
    seeds = f"mean ± std over {comparisons} seeds; " if std is not None else ("one seed; " if comparisons else "")
    if form == "libmtl":
        return f"Δm = {value} ({seeds}LibMTL form: mean over tasks; HIGHER is better, > 0 = MTL beats single-task)"
    return (
        f"Δm = {value} ({seeds}flat form, as in CAGrad/Nash-MTL: mean over all metrics, sign flipped; "
        "LOWER is better, < 0 = MTL beats single-task)"
    )
