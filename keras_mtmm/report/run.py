"""A run folder as the report reads it: its files parsed, an absent file None, a corrupt one a UserError."""

from __future__ import annotations

import zipfile
from pathlib import Path

import yaml

from keras_mtmm.errors import UserError, one_line
from keras_mtmm.evaluation.dump import read_evaluation_dump
from keras_mtmm.report.html import read_json
from keras_mtmm.run_folder import RunFolder, kept_index

REWRITE = "restore the file, or rerun train.py into a new folder"


class Run:
    """A run folder's files, parsed; an absent file is None."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.folder = folder = RunFolder(run_dir)
        if not folder.is_run():
            raise UserError(
                "RUN_DIR",
                f"'{run_dir}' is not a keras_mtmm run folder (it needs {folder.CONFIG} and {folder.METADATA})",
                "pass the folder train.py wrote, e.g. runs/demo",
            )
        self.config_yaml = (folder / folder.CONFIG).read_bytes().decode("utf-8", "replace")
        try:
            self.config = yaml.safe_load(self.config_yaml) or {}
        except yaml.YAMLError as error:
            what = f"not valid YAML ({one_line(str(error))})"
            raise UserError(str(folder / folder.CONFIG), what, REWRITE) from None
        if not isinstance(self.config, dict):
            raise UserError(str(folder / folder.CONFIG), "does not hold a mapping of config blocks", REWRITE)
        self.metadata = read_json(folder / folder.METADATA)
        if not isinstance(self.metadata.get("tasks"), dict) or not self.metadata["tasks"]:
            raise UserError(str(folder / folder.METADATA), "has no 'tasks' mapping", REWRITE)
        self.history = read_json(folder / folder.HISTORY)
        self.metrics = read_json(folder / folder.METRICS)
        self.transfer = read_json(folder / folder.TRANSFER)
        self.inspection = read_json(folder / folder.INSPECTION)
        self.data_sizes = read_json(folder / folder.DATA_SIZES)
        self.timings = read_json(folder / folder.TIMINGS)
        self.evaluation = read_dump(folder / folder.EVALUATION)
        self.tasks = list(self.metadata["tasks"])

    def setting(self, section: str, key: str, default: str = "?") -> str:
        return str((self.config.get(section) or {}).get(key, default))

    def main_metric(self, task: str) -> str | None:
        """The task's first metric: the configured one, else the first in metrics.json or history.json."""
        configured = self.metadata["tasks"][task].get("metrics")
        if configured:
            return configured[0]
        scored = ((self.metrics or {}).get("tasks") or {}).get(task, {})
        logged = [key[len(task) + 1 :] for key in (self.history or {}) if key.startswith(f"{task}_")]
        names = [name for name in [*scored, *logged] if name not in ("loss", "labelled")]
        return names[0] if names else None

    def best_epoch(self) -> int | None:
        """The 0-based epoch whose checkpoint training kept (lowest validation loss, else training loss)."""
        history = self.history or {}
        kept = kept_index(history)
        return None if kept is None else int(history["epoch"][kept])


def read_dump(path: Path):
    """The evaluation dump `(split, {task: arrays})`, None when absent; a corrupt one is a UserError naming it."""
    if not path.is_file():
        return None
    try:
        return read_evaluation_dump(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise UserError(str(path), f"not a readable evaluation dump ({error})", "rerun evaluate.py --output") from None
