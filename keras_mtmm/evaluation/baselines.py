"""Δm against single-task baselines: score each task's baseline checkpoint, then compare over the seeds.

`mtmm baselines` (or `train.py --baselines`) trains one single-task run per
task into a folder; this module scores them on the multi-task model's rows
and hands the reports to `transfer_seeds.compare_over_seeds`.
"""

from __future__ import annotations

import copy
from pathlib import Path

from keras_mtmm.data.tables import load_splits
from keras_mtmm.errors import UserError
from keras_mtmm.evaluation.scoring import score_model
from keras_mtmm.evaluation.transfer import FORMS
from keras_mtmm.evaluation.transfer_seeds import baseline_seed_folders, compare_over_seeds, seed_key
from keras_mtmm.run_folder import RunFolder


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
    if form not in FORMS:
        raise UserError("--delta-m-form", f"unknown form '{form}'", f"choose one of: {', '.join(FORMS)}")
    folders = baseline_seed_folders(folder)
    checkpoints = {seed: {task: f / task / RunFolder.BEST for task in report["tasks"]} for seed, f in folders.items()}
    for per_task in checkpoints.values():
        for task, checkpoint in per_task.items():
            if not checkpoint.is_file():
                raise UserError(
                    "--baselines",
                    f"no single-task baseline for task '{task}' ({checkpoint} is missing)",
                    "train them with `mtmm baselines --config ... --output-dir FOLDER`",
                )
    run = RunFolder(Path(model_path).parent) if model_path is not None and Path(model_path).suffix == ".keras" else None
    main_seed = run.seed() if run is not None else None
    others = {s: r / RunFolder.BEST for s, r in run.other_seed_runs().items()} if run is not None else {}
    if list(folders) == [None] and not others:  # one run each side: the baselines on the model's rows
        single = {task: score_model(path, table, split, batch_size) for task, path in checkpoints[None].items()}
        return compare_over_seeds([report], [single], form=form, seeds={"seeds": [main_seed]})
    mtl_seeds, baseline_seeds = sorted([main_seed, *others], key=seed_key), sorted(folders, key=seed_key)
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
    if config is None:
        raise ValueError("compare_with_baselines: several seeds need the experiment's config")
    seeded = copy.deepcopy(config)
    seeded.seed = seed
    return load_splits(seeded)[split]
