"""`mtmm tune`: a KerasTuner search over the config's own keys (the `tune:` section), one trial per training run.

Each trial sets its values on the config (as `--set` would) and runs the normal training path into
`<tune folder>/trial_<id>/run/`, with its early stopping; its objective is read from the kept epoch
of its history (the epoch `best.keras` holds). KerasTuner's oracle picks the values (random search,
Bayesian optimisation, or Hyperband, whose rounds set `training.epochs`) and keeps its state under
`<tune folder>/keras_tuner/`: the same command again resumes the search, never re-running a finished
trial (`--overwrite` starts over).

Distributed search is KerasTuner's own: one chief holds the oracle, the workers ask it for trials
over gRPC (`KERASTUNER_TUNER_ID` = `chief` or `tuner<i>`, `KERASTUNER_ORACLE_IP`,
`KERASTUNER_ORACLE_PORT`). Under `mtmm launch --workers N`, each copy derives them from its
TF_CONFIG: worker 0 is the chief, at worker 0's address; the others run the trials. The trial
folders, and the oracle's, must be on a folder every machine sees.

KerasTuner is imported here only (`pip install keras-tuner`, or the `tune` extra).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.config.tune import set_dotted
from keras_mtmm.errors import UserError
from keras_mtmm.run_folder import kept_index
from keras_mtmm.training.run import train
from keras_mtmm.training.tune_records import SEARCH, TRIAL_RECORD, write_search_files

KT_PROJECT = "keras_tuner"  # KerasTuner's own state, under the tune folder
OBJECTIVE = "objective"  # the name the oracle knows each trial's score by
PIP_HINT = 'pip install keras-tuner  (or: pip install "keras_mtmm[tune]")'


def require_keras_tuner():
    """Import keras_tuner; without it, a `UserError` (one line, exit 2) that names the pip command."""
    try:
        import keras_tuner
    except ImportError:
        raise UserError("mtmm tune", "it searches with KerasTuner, which is not installed", PIP_HINT) from None
    return keras_tuner


def tuner_environment(env: dict) -> str | None:
    """Set KerasTuner's distribution variables from `mtmm launch`'s TF_CONFIG (in place); the role, or None.

    Variables already set win (a cluster configured as KerasTuner documents it). TF_CONFIG is removed:
    each trial trains in its own process, as a single worker.
    """
    if "KERASTUNER_TUNER_ID" not in env and "TF_CONFIG" in env:
        spec = json.loads(env.pop("TF_CONFIG"))
        workers, index = spec["cluster"]["worker"], int(spec["task"]["index"])
        host, port = workers[0].rsplit(":", 1)
        env.update(
            KERASTUNER_TUNER_ID="chief" if index == 0 else f"tuner{index - 1}",
            KERASTUNER_ORACLE_IP=host,
            KERASTUNER_ORACLE_PORT=port,
        )
    return env.get("KERASTUNER_TUNER_ID") if "KERASTUNER_ORACLE_IP" in env else None


def require_algorithm(tune) -> None:
    """KerasTuner, and scipy for `bayesian` (its Gaussian process): a `UserError` naming the pip command if absent."""
    require_keras_tuner()
    if tune.algorithm == "bayesian" and importlib.util.find_spec("scipy") is None:
        raise UserError(
            "tune.algorithm",
            "bayesian optimisation needs scipy (KerasTuner's Gaussian process), which is not installed",
            'pip install "keras-tuner[bayesian]" (or: pip install scipy), or use random or hyperband',
        )


def hyperparameters(space: dict):
    """The KerasTuner search space of a checked `tune.space` (one hyperparameter per dotted key)."""
    kt = require_keras_tuner()
    hp = kt.HyperParameters()
    for key, entry in space.items():
        sampling = "log" if entry.get("log", False) else "linear"
        if "choice" in entry:
            hp.Choice(key, entry["choice"])
        elif "int" in entry:
            hp.Int(key, entry["int"][0], entry["int"][1], step=entry.get("step") or 1, sampling=sampling)
        else:
            hp.Float(key, float(entry["float"][0]), float(entry["float"][1]), step=entry.get("step"), sampling=sampling)
    return hp


def build_oracle(tune, seed: int, epochs: int):
    """The oracle of `tune.algorithm`, minimising or maximising the trials' `objective`."""
    kt = require_keras_tuner()
    objective = kt.Objective(OBJECTIVE, tune.objective.direction)
    common = {
        "objective": objective,
        "hyperparameters": hyperparameters(tune.space),
        "seed": seed,
        "tune_new_entries": False,
        "allow_new_entries": False,
        "max_consecutive_failed_trials": max(tune.max_trials, 3),
    }
    if tune.algorithm == "hyperband":
        return kt.oracles.HyperbandOracle(max_epochs=tune.max_epochs or epochs, factor=tune.factor, **common)
    oracle = kt.oracles.BayesianOptimizationOracle if tune.algorithm == "bayesian" else kt.oracles.RandomSearchOracle
    return oracle(max_trials=tune.max_trials, **common)


def trial_config(base: dict, values: dict, epochs: int | None):
    """The config of one trial: the base config (no `tune`) with the trial's values (and Hyperband's epochs)."""
    raw = copy.deepcopy(base)
    for key, value in values.items():
        set_dotted(raw, key, value, f"tune.space.{key}")
    if epochs is not None:
        set_dotted(raw, "training.epochs", int(epochs), "training.epochs")
    return config_from_dict(raw)


def objective_of(history: dict, objective) -> tuple[float, dict[str, float], int]:
    """(the objective, its metrics, the kept epoch): each metric at the epoch `best.keras` holds."""
    kept = kept_index(history)
    if kept is None:
        raise UserError("tune.objective", "the trial's history has no finite loss", "check the trial's run folder")
    metrics = {}
    for name in objective.names():
        values = history.get(name)
        if not values or kept >= len(values) or values[kept] is None:
            raise UserError(
                "tune.objective",
                f"{name!r} is not in the trial's history (it has {', '.join(sorted(history))})",
                "use val_loss or a val_<task>_<metric> key of history.json",
            )
        metrics[name] = float(values[kept])
    return sum(weight * metrics[name] for name, weight in objective.names().items()), metrics, kept


@dataclass
class TuneResult:
    """What a search left: its folder, the trial records (best first), the role of this process."""

    folder: Path
    trials: list[dict]
    role: str | None


def make_tuner(base: dict, config, folder: Path, overwrite: bool, verbose):
    """A KerasTuner tuner whose trials are training runs of `base` with the trial's values."""
    kt = require_keras_tuner()

    class ConfigTuner(kt.engine.base_tuner.BaseTuner):
        def run_trial(self, trial, *args, **kwargs):
            values = {key: trial.hyperparameters.get(key) for key in config.tune.space}
            epochs = trial.hyperparameters.values.get("tuner/epochs")
            trial_folder = folder / f"trial_{trial.trial_id}"
            record = {"trial": trial.trial_id, "values": values, "tuner": self.tuner_id, "epochs": epochs}
            try:
                trial_run = trial_config(base, values, epochs)
                result = train(
                    trial_run, output_dir=trial_folder / "run", export=False, verbose=verbose, overwrite=True
                )
                value, metrics, kept = objective_of(result.history, config.tune.objective)
            except UserError as error:
                _write_record(trial_folder, {**record, "status": "FAILED", "error": str(error)})
                raise kt.errors.FailedTrialError(str(error)) from None
            _write_record(
                trial_folder, {**record, "status": "COMPLETED", "objective": value, "metrics": metrics, "epoch": kept}
            )
            return {OBJECTIVE: value}

    oracle = build_oracle(config.tune, config.seed, config.training.epochs)
    return ConfigTuner(oracle, directory=str(folder), project_name=KT_PROJECT, overwrite=overwrite)


def _write_record(trial_folder: Path, record: dict) -> None:
    trial_folder.mkdir(parents=True, exist_ok=True)
    staging = trial_folder / f".{TRIAL_RECORD}.tmp"
    staging.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    staging.replace(trial_folder / TRIAL_RECORD)


def tune(raw: dict, folder: str | Path | None = None, overwrite: bool = False, verbose: int | str = 0) -> TuneResult:
    """Run (or resume) the search `raw["tune"]` describes, its files under `folder`.

    Args:
        raw: the experiment config as plain data, with its `tune` section (relative paths resolved).
        folder: the tune folder (default `training.output_dir/<name>/tune`).
        overwrite: start over (the chief, or the one process, removes the oracle's state and the trials).
        verbose: the trials' Keras verbosity.

    Returns:
        The `TuneResult`; a worker of a distributed search has no records (the chief writes them).
    """
    config = config_from_dict(raw)  # (checks the tune section and every space value)
    require_algorithm(config.tune)  # (before anything is written)
    role = tuner_environment(os.environ)
    weights = [key for key in config.tune.space if key.startswith("weighting.") or key.endswith(".weight")]
    if weights and "val_loss" in config.tune.objective.names() and role in (None, "chief"):
        print(
            f"warning: tune.objective: val_loss is the weighted sum of the task losses, which {weights[0]} "
            "changes: trials are not comparable by it; weigh task metrics instead (tune.objective.metrics)"
        )
    folder = Path(folder) if folder is not None else Path(config.training.output_dir) / config.name / "tune"
    folder.mkdir(parents=True, exist_ok=True)
    base = {key: value for key, value in raw.items() if key != "tune"}
    owner = role in (None, "chief")  # (a worker never removes nor rewrites what the search shares)
    if owner and overwrite:
        for trial in folder.glob("trial_*"):
            shutil.rmtree(trial)
    if owner:  # what was searched, for the tuning report
        (folder / SEARCH).write_text(yaml.safe_dump(raw["tune"], sort_keys=False), encoding="utf-8")
    tuner = make_tuner(base, config, folder, overwrite and owner, verbose)
    tuner.search()
    if not owner:
        return TuneResult(folder, [], role)
    trials = write_search_files(folder, tuner.oracle, config.tune)
    return TuneResult(folder, trials, role)
