"""Δm over seeds: each seed's multi-task model against its seed's single-task baselines, mean ± std.

`transfer.compare` scores one pair of runs; one pair says more about the
seeds than the methods (a task's delta moves by several points from seed to
seed on the demo). This module aggregates the comparisons of several seeds and
flags negative transfer only beyond their noise.

A seed decides everything `seed` does: the initialisation and data order, the
split, and the demo's generated data. So a seed's two sides are compared on
that seed's split, and only seeds both sides have are compared: a baseline of
seed 43 may have trained on the test rows of seed 42.
"""

from __future__ import annotations

import math
from pathlib import Path

from keras_mtmm.evaluation.transfer import compare, mean
from keras_mtmm.run_folder import SEED_PREFIX, seed_of


def compare_over_seeds(
    mtl_reports: list[dict],
    baseline_reports: list[dict[str, dict]],
    form: str = "libmtl",
    seeds: dict | None = None,
) -> dict:
    """Δm over seeds: each multi-task report against its seed's baselines, then mean ± standard deviation.

    Comparison k is ``compare(mtl_reports[k], baseline_reports[k])`` (the
    same seed, scored on the same rows). The result has :func:`compare`'s
    fields, with means over the comparisons in place of single values
    (``delta_m``, each task's ``delta``, each metric's ``mtl``, ``single`` and
    ``relative_gain``), and beside them ``delta_m_std``, ``delta_m_per_seed``,
    and per task ``delta_std``, ``delta_se`` (std/√N) and ``delta_per_seed``
    (standard deviations with N − 1, over N ≥ 2 comparisons).

    Negative transfer is flagged where the multi-task model is worse beyond the
    noise: a task's mean delta below −2 standard errors (``mean + 2·se < 0``);
    with one comparison (one seed each side) there is no noise estimate, and a
    task is flagged where its delta is below 0, as :func:`compare` does. The
    rule used is in ``negative_transfer_rule``.

    Args:
        mtl_reports: the multi-task model's metrics report per seed.
        baseline_reports: per seed, task -> the single-task model's report.
        form: ``"libmtl"`` or ``"flat"`` (see :func:`compare`).
        seeds: written to the result as ``seeds`` (which seeds each side had).

    Example:
        >>> mtl = [{"tasks": {"a": {"accuracy": v}}} for v in (0.90, 0.86)]
        >>> single = [{"a": {"tasks": {"a": {"accuracy": v}}}} for v in (0.80, 0.86)]
        >>> result = compare_over_seeds(mtl, single)
        >>> round(result["delta_m"], 2), round(result["delta_m_std"], 2)
        (6.25, 8.84)
    """
    if not mtl_reports or len(mtl_reports) != len(baseline_reports):
        raise ValueError(
            f"compare_over_seeds: {len(mtl_reports)} multi-task and {len(baseline_reports)} single-task reports; "
            "give one pair per seed"
        )
    count = len(mtl_reports)
    runs = [compare(mtl, single, form=form) for mtl, single in zip(mtl_reports, baseline_reports)]
    result = runs[0]
    result["seeds"] = seeds or {}
    result["comparisons"] = count
    if count == 1:
        result["negative_transfer_rule"] = "one seed each side, no noise estimate: a task delta below 0"
        return result
    result["delta_m_per_seed"] = [run["delta_m"] for run in runs]
    result["delta_m"], result["delta_m_std"] = _mean_std(result["delta_m_per_seed"])
    for task, entry in result["tasks"].items():
        per_seed = [run["tasks"][task]["delta"] for run in runs]
        entry["delta"], entry["delta_std"] = _mean_std(per_seed)
        entry["delta_se"] = entry["delta_std"] / math.sqrt(count)
        entry["delta_per_seed"] = per_seed
        entry["negative_transfer"] = entry["delta"] + 2 * entry["delta_se"] < 0
        for name, values in entry["metrics"].items():
            for key in ("mtl", "single", "relative_gain"):
                found = [run["tasks"][task]["metrics"].get(name, {}).get(key) for run in runs]
                values[key] = mean([v for v in found if v is not None])
            gains = [
                run["tasks"][task]["metrics"][name]["relative_gain"]
                for run in runs
                if name in run["tasks"][task]["metrics"]
            ]
            values["relative_gain_std"] = _mean_std(gains)[1] if len(gains) > 1 else 0.0
    result["negative_transfer"] = [task for task, entry in result["tasks"].items() if entry["negative_transfer"]]
    result["negative_transfer_rule"] = f"mean task delta below -2 standard errors over {count} seeds"
    result["skipped"] = [dict(t) for t in {tuple(sorted(s.items())) for run in runs for s in run["skipped"]}]
    return result


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (N − 1) of at least two values."""
    average = mean(values)
    return average, math.sqrt(sum((v - average) ** 2 for v in values) / (len(values) - 1))


def baseline_seed_folders(folder) -> dict[int | None, object]:
    """The single-task runs of a baselines folder, per seed: `{None: folder}` for one seed
    (`<folder>/<task>/`), `{s: <folder>/seed-<s>}` for several (`mtmm baselines --seeds N`)."""
    folder = Path(folder)
    seeded = sorted((p for p in folder.glob(SEED_PREFIX + "*") if p.is_dir() and seed_of(p) is not None), key=seed_of)
    return {seed_of(p): p for p in seeded} if seeded else {None: folder}


def pair_by_seed(mtl: dict, baselines: dict) -> tuple[list, list, list]:
    """`(seeds, multi-task reports, baseline reports)` paired by seed, from `{seed: report}` and `{seed: {task:
    report}}`; one run each side pairs whatever its seeds (key None: a baselines folder without seeds)."""
    if len(mtl) == 1 and len(baselines) == 1 and None in baselines:
        return list(mtl), list(mtl.values()), list(baselines.values())
    seeds = sorted(mtl, key=seed_key)
    if seeds != sorted(baselines, key=seed_key) or None in seeds:
        raise ValueError(
            f"the multi-task runs have seeds {seeds} and the baselines {sorted(baselines, key=seed_key)}: "
            "a seed's two sides are compared on that seed's split, so both sides need the same seeds"
        )
    return seeds, [mtl[s] for s in seeds], [baselines[s] for s in seeds]


def seed_key(seed):
    return (seed is None, seed if seed is not None else 0)
