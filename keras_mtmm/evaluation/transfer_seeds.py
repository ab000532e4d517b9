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

from keras_mtmm.evaluation.transfer import _mean, compare


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
                values[key] = _mean([v for v in found if v is not None])
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
    mean = _mean(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


SEED_PREFIX = "seed-"


def seed_of(folder) -> int | None:
    """The seed in a `seed-<s>` folder's name, or None."""
    name = getattr(folder, "name", str(folder))
    digits = name[len(SEED_PREFIX) :]
    return int(digits) if name.startswith(SEED_PREFIX) and digits.lstrip("-").isdigit() else None


def baseline_seed_folders(folder) -> dict[int | None, object]:
    """The single-task runs of a baselines folder, per seed: `{None: folder}` for one seed
    (`<folder>/<task>/`), `{s: <folder>/seed-<s>}` for several (`mtmm baselines --seeds N`)."""
    from pathlib import Path

    folder = Path(folder)
    seeded = sorted((p for p in folder.glob(SEED_PREFIX + "*") if p.is_dir() and seed_of(p) is not None), key=seed_of)
    return {seed_of(p): p for p in seeded} if seeded else {None: folder}


def extra_seed_runs(run_dir) -> dict[int, object]:
    """The multi-task runs of the other seeds beside a run (`<run>/seeds/seed-<s>/`, `train.py --seeds N`)."""
    from pathlib import Path

    seeds = Path(run_dir) / "seeds"
    found = [p for p in seeds.glob(SEED_PREFIX + "*") if p.is_dir() and seed_of(p) is not None]
    return {seed_of(p): p for p in sorted(found, key=seed_of)}


def compare_with_baselines(
    report: dict, folder, table, split: str, batch_size: int, form: str, model_path=None, config=None, same_rows=False
) -> dict:
    """Score the single-task baselines and compare (Δm, negative transfer), over the seeds both sides have.

    The baselines are `<folder>/<task>/best.keras` (one run per task) or
    `<folder>/seed-<s>/<task>/best.keras` (`mtmm baselines --seeds N`). The
    multi-task side is `report` (of the model at `model_path`, scored on
    `table`) and, when that is a `.keras` file in a run folder trained with
    `--seeds N`, the other seeds' runs beside it (`<run>/seeds/seed-<s>/`).

    One run per task: the baselines are scored on `table`, as before seeds
    existed (whatever their seed). Several seeds: seed s's two sides are
    scored on seed s's `split` (`config` with `seed: s`), or, with `same_rows`
    (`table` is a file's rows, `evaluate.py --data FILE`), every seed's on
    `table`; Δm is the mean ± std over the seeds (`compare_over_seeds`); the
    seeds must be the same on both sides.
    """
    from pathlib import Path

    from keras_mtmm.errors import UserError
    from keras_mtmm.evaluation.scoring import score_model
    from keras_mtmm.evaluation.transfer import FORMS

    if form not in FORMS:
        raise UserError("--delta-m-form", f"unknown form '{form}'", f"choose one of: {', '.join(FORMS)}")
    folders = baseline_seed_folders(folder)
    checkpoints = {seed: {task: f / task / "best.keras" for task in report["tasks"]} for seed, f in folders.items()}
    for per_task in checkpoints.values():
        for task, checkpoint in per_task.items():
            if not checkpoint.is_file():
                raise UserError(
                    "--baselines",
                    f"no single-task baseline for task '{task}' ({checkpoint} is missing)",
                    "train them with `mtmm baselines --config ... --output-dir FOLDER`",
                )
    run_dir = Path(model_path).parent if model_path is not None and Path(model_path).suffix == ".keras" else None
    main_seed = run_seed(run_dir) if run_dir is not None else None
    others = {s: r / "best.keras" for s, r in extra_seed_runs(run_dir).items()} if run_dir is not None else {}
    if list(folders) == [None] and not others:  # one run each side: the baselines on the model's rows
        single = {task: score_model(path, table, split, batch_size) for task, path in checkpoints[None].items()}
        return compare_over_seeds([report], [single], form=form, seeds={"seeds": [main_seed]})
    mtl_seeds, baseline_seeds = sorted([main_seed, *others], key=_seed_key), sorted(folders, key=_seed_key)
    if mtl_seeds != baseline_seeds or None in mtl_seeds:
        raise UserError(
            "--baselines",
            f"the multi-task runs have seeds {mtl_seeds} and the baselines {baseline_seeds}: a seed's two sides "
            "are compared on that seed's split, so both sides need the same seeds",
            f"train both with --seeds {len(baseline_seeds)} (train.py --seeds N, mtmm baselines --seeds N)",
        )
    mtl_reports, baseline_reports = [], []
    for seed in mtl_seeds:
        rows = table if seed == main_seed or same_rows else _seed_table(config, seed, split)
        mtl_reports.append(report if seed == main_seed else score_model(others[seed], rows, split, batch_size))
        baseline_reports.append({t: score_model(p, rows, split, batch_size) for t, p in checkpoints[seed].items()})
    on = f"all on {split}" if same_rows else f"each on its own {split} split"
    seeds = {"seeds": mtl_seeds, "pairing": f"seed by seed, {on}"}
    return compare_over_seeds(mtl_reports, baseline_reports, form=form, seeds=seeds)


def _seed_table(config, seed: int, split: str):
    """The `split` rows of the experiment with `seed: seed` (its own split, and its own demo data)."""
    import copy

    from keras_mtmm.data.tables import load_splits

    if config is None:
        raise ValueError("compare_with_baselines: several seeds need the experiment's config")
    seeded = copy.deepcopy(config)
    seeded.seed = seed
    return load_splits(seeded)[split]


def pair_by_seed(mtl: dict, baselines: dict) -> tuple[list, list, list]:
    """`(seeds, multi-task reports, baseline reports)` paired by seed, from `{seed: report}` and `{seed: {task:
    report}}`; one run each side pairs whatever its seeds (key None: a baselines folder without seeds)."""
    if len(mtl) == 1 and len(baselines) == 1 and None in baselines:
        return list(mtl), list(mtl.values()), list(baselines.values())
    seeds = sorted(mtl, key=_seed_key)
    if seeds != sorted(baselines, key=_seed_key) or None in seeds:
        raise ValueError(
            f"the multi-task runs have seeds {seeds} and the baselines {sorted(baselines, key=_seed_key)}: "
            "a seed's two sides are compared on that seed's split, so both sides need the same seeds"
        )
    return seeds, [mtl[s] for s in seeds], [baselines[s] for s in seeds]


def run_seed(run_dir) -> int | None:
    """The seed a run folder was trained with (its metadata.json), or None."""
    import json
    from pathlib import Path

    try:
        metadata = json.loads((Path(run_dir) / "metadata.json").read_text(encoding="utf-8"))
        return int(metadata["reproducibility"]["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _seed_key(seed):
    return (seed is None, seed if seed is not None else 0)
