"""A run folder: the one place that names its files, writes them whole and loads what a run saved.

`training.output_dir/<name>` (or `--output-dir`) holds:

    config.yaml          the resolved config
    metadata.json        task weights, classes, inputs, versions, the execution plan
    preprocessor/        the adapted Preprocessor (state.json, vocabularies)
    best.keras           the best checkpoint (lowest validation loss)
    backup/              the training state while a run is in progress (training/checkpointing.py)
    logs/                TensorBoard logs (per-task losses, metrics, task weights)
    history.json         per-epoch losses, metrics and task weights
    metrics.json         the test split's metrics (the metrics JSON)
    evaluation.npz       the test split's first rows: predictions, targets, label masks (for the report)
    inspection.json      gates and modality weights on the validation split (for the report)
    data_sizes.json      examples per split, labelled examples per task and split
    data_fingerprint.json  what the run trains on (a resumed run must see the same data)
    split_manifest.json  which source rows (CSV lines, row indices) went to which split
    transfer.json        Δm against the single-task baselines (`train.py --baselines`)
    seeds/seed-<s>/      the runs of the other seeds (`train.py --seeds N`)
    baselines/           the single-task baselines (`mtmm baselines`; kept by `--overwrite`)
    report/              the HTML run report (`mtmm report`)
    timings.json         load/prepare/fit/export/total seconds: written last, it marks a finished run

"""

from __future__ import annotations

import json
import math
import shutil
import zipfile
from pathlib import Path

import keras
import yaml

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.errors import ConfigError, UserError
from keras_mtmm.files import write_json, write_text
from keras_mtmm.preprocessing.preprocessor import Preprocessor

SEED_PREFIX = "seed-"


class RunFolder:
    """The files of one run folder, by name. Nothing else in the package spells a run-folder file name."""

    CONFIG = "config.yaml"
    METADATA = "metadata.json"
    PREPROCESSOR = "preprocessor"
    BEST = "best.keras"
    BACKUP = "backup"
    LOGS = "logs"
    HISTORY = "history.json"
    METRICS = "metrics.json"
    EVALUATION = "evaluation.npz"
    INSPECTION = "inspection.json"
    DATA_SIZES = "data_sizes.json"
    FINGERPRINT = "data_fingerprint.json"
    MANIFEST = "split_manifest.json"
    TRANSFER = "transfer.json"
    SEEDS = "seeds"
    BASELINES = "baselines"
    REPORT = "report"
    REPORT_PAGE = "report/report.html"
    TIMINGS = "timings.json"  # the last file a run writes: a folder with it holds a finished run
    # What a run writes; `--overwrite` removes these and nothing else (a baselines/ folder inside stays).
    RUN_FILES = (
        CONFIG,
        METADATA,
        PREPROCESSOR,
        BEST,
        BACKUP,
        LOGS,
        HISTORY,
        METRICS,
        EVALUATION,
        INSPECTION,
        DATA_SIZES,
        TIMINGS,
        FINGERPRINT,
        MANIFEST,
        TRANSFER,
        SEEDS,
        REPORT,
    )

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- state ------------------------------------------------------------------------------------------------
    def is_run(self) -> bool:
        """Whether the folder holds (the start of) a keras_mtmm run: its config and metadata."""
        return (self / self.CONFIG).is_file() and (self / self.METADATA).is_file()

    def is_finished(self) -> bool:
        return (self / self.TIMINGS).is_file()

    def check_not_finished(self, overwrite: bool) -> None:
        """A finished run is never silently replaced: without `overwrite`, a rerun into its folder is refused
        (an interrupted run, with no timings.json yet, resumes or starts over)."""
        if overwrite or not self.is_finished():
            return
        raise ConfigError(
            "--output-dir",
            f"'{self.path}' holds a finished run, which this run would replace",
            "pass another --output-dir to keep it, or --overwrite to replace it (overwrite=True in Python)",
        )

    def clear(self) -> None:
        """Remove a run's files (`--overwrite`), so nothing of the old run mixes with the new one."""
        found = [self / name for name in self.RUN_FILES if (self / name).exists()]
        if found:
            print(f"replacing the run in {self.path} (--overwrite)")
        for path in found:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()

    # -- writing ----------------------------------------------------------------------------------------------
    def write_json(self, name: str, value, compact: bool = False) -> Path:
        return write_json(self / name, value, compact=compact)

    def write_config(self, config_yaml: str) -> Path:
        return write_text(self / self.CONFIG, config_yaml)

    def write_metadata(self, metadata: dict) -> Path:
        return self.write_json(self.METADATA, metadata)

    # -- reading ----------------------------------------------------------------------------------------------
    def read_json(self, name: str, default=None):
        """A JSON file of the folder, `default` when it is absent or unreadable."""
        try:
            return json.loads((self / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return default

    def config_yaml(self) -> str:
        return (self / self.CONFIG).read_text(encoding="utf-8")

    def metadata(self) -> dict:
        return json.loads((self / self.METADATA).read_text(encoding="utf-8"))

    def history(self) -> dict[str, list]:
        """The per-epoch history (empty while there is none yet; a corrupt file is an error, not empty)."""
        return read_history(self / self.HISTORY)

    def seed(self) -> int | None:
        """The seed the run was trained with (its metadata), or None."""
        try:
            return int(self.metadata()["reproducibility"]["seed"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def load_config(self):
        """The run's resolved `ExperimentConfig`."""
        return config_from_dict(yaml.safe_load(self.config_yaml()))

    def load_preprocessor(self):
        return Preprocessor.load(self / self.PREPROCESSOR)

    def load_network(self, checkpoint: str = BEST):
        """The functional network (raw-feature dict in, task dict out) of a checkpoint in this folder."""
        model = load_checkpoint(self / checkpoint)
        return getattr(model, "network", model)

    # -- the runs of other seeds --------------------------------------------------------------------------------
    def seed_run(self, seed: int) -> RunFolder:
        return RunFolder(self / self.SEEDS / f"{SEED_PREFIX}{seed}")

    def other_seed_runs(self) -> dict[int, RunFolder]:
        """The multi-task runs of the other seeds beside this run (`train.py --seeds N`), by seed."""
        found = [p for p in (self / self.SEEDS).glob(SEED_PREFIX + "*") if p.is_dir() and seed_of(p) is not None]
        return {seed_of(p): RunFolder(p) for p in sorted(found, key=seed_of)}


def read_history(path: str | Path) -> dict[str, list]:
    """A run's `history.json` (empty if there is none yet). Resuming and early stopping read it, so a
    corrupt file raises rather than reading as an empty history."""
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def kept_index(history: dict[str, list]) -> int | None:
    """The index, in a run's history lists, of the epoch whose checkpoint training kept (`best.keras`):
    the lowest validation loss, else the lowest training loss; None when neither has a finite value."""
    for key in ("val_loss", "loss"):
        values = [math.inf if v is None else v for v in history.get(key, [])]
        if values and any(math.isfinite(v) for v in values):
            return values.index(min(values))
    return None


def seed_of(folder) -> int | None:
    """The seed in a `seed-<s>` folder's name, or None."""
    name = getattr(folder, "name", str(folder))
    digits = name[len(SEED_PREFIX) :]
    return int(digits) if name.startswith(SEED_PREFIX) and digits.lstrip("-").isdigit() else None


def load_checkpoint(path):
    """Load a `.keras` checkpoint written by training (a `MultiTaskModel`), without its compile state.

    `import keras_mtmm` registers every keras_mtmm layer, loss and model, so no `custom_objects` are needed.
    """
    try:
        return keras.models.load_model(path, compile=False)  # safe_mode: no Python code is deserialized
    except ValueError as error:
        text = str(error)
        if "safe_mode" in text or "Lambda" in text:
            raise UserError(
                str(path),
                "holds Python code (a Lambda layer or function), which Keras' safe mode refuses to run",
                "load only checkpoints written by keras_mtmm's training",
            ) from None
        raise UserError(
            str(path),
            f"is not a loadable keras_mtmm checkpoint ({text.splitlines()[0][:200]})",
            "pass a run's best.keras",
        ) from None
    except (OSError, zipfile.BadZipFile) as error:
        raise UserError(str(path), f"cannot be read as a .keras file ({error})", "pass a run's best.keras") from None
