"""Single-task baselines: one model per task with the experiment's data, inputs, fusion and sharing (for Δm)."""

from __future__ import annotations

import copy
from pathlib import Path

from keras_mtmm.training import TrainResult, train


def single_task_config(config, task: str):
    """The experiment restricted to one task: same data, inputs, fusion and sharing; weight 1, static."""
    from keras_mtmm.config import WeightingConfig, validate

    single = copy.deepcopy(config)
    single.name = f"{config.name}_{task}"
    single.tasks = {task: single.tasks[task]}
    single.tasks[task].weight = 1.0
    single.weighting = WeightingConfig(strategy="static")
    validate(single)
    return single


def train_baselines(config, output_dir: str | Path, verbose: int | str = 0) -> dict[str, TrainResult]:
    """Train one single-task model per task (`<output_dir>/<task>/`), for Δm and negative transfer."""
    results = {}
    for task in config.tasks:
        print(f"single-task baseline: {task}")
        results[task] = train(
            single_task_config(config, task), output_dir=Path(output_dir) / task, export=False, verbose=verbose
        )
    return results
