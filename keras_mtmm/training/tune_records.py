"""The files a search leaves in its tune folder: `trials.json` (every trial), `best.yaml`, the leaderboard.

`trials.json` is a list, in trial order, of

    {"trial": "00", "values": {"<dotted key>": value, ...}, "objective": number | null,
     "status": "COMPLETED" | "FAILED" | "INVALID" | "RUNNING" | ..., "metrics": {"val_loss": ...},
     "epoch": <kept epoch, 0-based>, "tuner": "<KerasTuner id>", "run": "trial_00/run"}

read from KerasTuner's oracle (status, values, score) and from each trial's own `trial.json`
(metrics, the kept epoch, the error of a failed trial). `best.yaml` is the best trial's resolved
config (its run folder's `config.yaml`): `python train.py --config best.yaml` trains it again.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from keras_mtmm.run_folder import RunFolder

TRIAL_RECORD = "trial.json"  # in each trial's folder, written by the process that ran it
TRIALS = "trials.json"
BEST = "best.yaml"
SEARCH = "search.yaml"  # the tune section searched (for the tuning report)


def trial_records(folder: Path, oracle, space: dict) -> list[dict]:
    """Every trial the oracle knows, in trial order, with what its own record adds."""
    records = []
    for trial_id in sorted(oracle.trials, key=lambda t: (len(t), t)):  # ("2" before "10")
        trial = oracle.trials[trial_id]
        values = trial.hyperparameters.values
        record = {
            "trial": trial_id,
            "values": {key: values[key] for key in space if key in values},
            "objective": _finite(trial.score),
            "status": str(getattr(trial.status, "value", trial.status)),
            "run": f"trial_{trial_id}/run",
        }
        own = folder / f"trial_{trial_id}" / TRIAL_RECORD
        if own.exists():
            saved = json.loads(own.read_text(encoding="utf-8"))
            record.update({key: saved[key] for key in ("metrics", "epoch", "tuner", "error", "epochs") if key in saved})
        records.append(record)
    return records


def ranked(records: list[dict], direction: str) -> list[dict]:
    """The completed trials, best first (ties: the earlier trial)."""
    done = [r for r in records if r["status"] == "COMPLETED" and r["objective"] is not None]
    sign = 1.0 if direction == "min" else -1.0
    return sorted(done, key=lambda r: (sign * r["objective"], r["trial"]))


def write_search_files(folder: Path, oracle, tune) -> list[dict]:
    """Write `trials.json` and `best.yaml` (each replaced whole); return the records, best first."""
    records = trial_records(folder, oracle, tune.space)
    _replace(folder / TRIALS, json.dumps(records, indent=1, default=str) + "\n")
    best = ranked(records, tune.objective.direction)
    if best:
        source = folder / best[0]["run"] / RunFolder.CONFIG
        if source.exists():
            staging = folder / f".{BEST}.tmp"
            shutil.copyfile(source, staging)
            staging.replace(folder / BEST)
    return best + [r for r in records if r not in best]


def leaderboard(records: list[dict], limit: int = 10) -> str:
    """A text table of the trials as `write_search_files` returns them (best first)."""
    keys = sorted({key for r in records for key in r["values"]})
    header = ["rank", "trial", *keys, "objective", "status"]
    rows = []
    for rank, record in enumerate(records[:limit], start=1):
        objective = "n/a" if record["objective"] is None else f"{record['objective']:.4f}"
        values = [_text(record["values"].get(key)) for key in keys]
        rows.append([str(rank), str(record["trial"]), *values, objective, record["status"]])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    if len(records) > limit:
        lines.append(f"... {len(records) - limit} more in trials.json")
    return "\n".join(lines)


def _text(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _finite(value):
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _replace(path: Path, text: str) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text, encoding="utf-8")
    staging.replace(path)
