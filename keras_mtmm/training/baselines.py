"""Single-task baselines: one model per task with the experiment's data, inputs, fusion and sharing (for Δm)."""

from __future__ import annotations

import copy
from pathlib import Path

from keras_mtmm.config.loading import validate
from keras_mtmm.config.schema import WeightingConfig
from keras_mtmm.errors import UserError
from keras_mtmm.run_folder import SEED_PREFIX, RunFolder
from keras_mtmm.training.run import TrainResult, train


def single_task_config(config, task: str):
    """The experiment restricted to one task: same data, inputs, fusion and sharing; weight 1, static."""
    single = copy.deepcopy(config)
    single.name = f"{config.name}_{task}"
    single.tasks = {task: single.tasks[task]}
    single.tasks[task].weight = 1.0
    single.weighting = WeightingConfig(strategy="static")
    validate(single)
    return single


def train_baselines(
    config, output_dir: str | Path, verbose: int | str = 0, seeds: list[int] | None = None, overwrite: bool = False
) -> dict[int, dict[str, TrainResult]]:
    """Train one single-task model per task and seed, for Δm and negative transfer: `{seed: {task: run}}`.

    One seed (the config's, or `seeds` of one): `<output_dir>/<task>/`. Several
    `seeds`: `<output_dir>/seed-<s>/<task>/`, which `evaluate.py --baselines`
    reads as one comparison per seed (Δm as mean ± std). A finished baseline there is replaced only
    with `overwrite`.
    """
    seeds = list(seeds) if seeds else [config.seed]
    results = {}
    for seed in seeds:
        folder = Path(output_dir) / f"{SEED_PREFIX}{seed}" if len(seeds) > 1 else Path(output_dir)
        results[seed] = {}
        for task in config.tasks:
            print(f"single-task baseline: {task}" + (f" (seed {seed})" if len(seeds) > 1 else ""))
            single = single_task_config(config, task)
            single.seed = seed
            results[seed][task] = train(
                single, output_dir=folder / task, export=False, verbose=verbose, overwrite=overwrite
            )
    return results


def train_other_seeds(config, run_dir: str | Path, seeds: list[int], verbose: int | str = 0) -> None:
    """The multi-task model of `train.py --seeds N` for its other seeds: `<run_dir>/seeds/seed-<s>/`, not exported."""
    for seed in seeds:
        print(f"multi-task model, seed {seed}")
        other = copy.deepcopy(config)
        other.seed = seed
        train(other, output_dir=RunFolder(run_dir).seed_run(seed).path, export=False, verbose=verbose)


def seed_list(config, count: int) -> list[int]:
    """The seeds of `--seeds N`: the config's seed and the N − 1 after it."""
    if not isinstance(count, int) or count < 1:
        raise UserError("--seeds", f"expected a positive integer, got {count}", "e.g. --seeds 3")
    return [config.seed + k for k in range(count)]
