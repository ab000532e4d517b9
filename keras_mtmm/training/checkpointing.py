"""Fault tolerance for training: step-level checkpoints, exact resume, a guard against non-finite losses.

The training state lives in `<run>/backup/` while a run is in progress:

    backup/latest.json             {"epoch", "step", "global_step", "folder"}: the newest complete state
    backup/state-<global_step>/    weights.keras (model, optimizer, weighting state), random.npz (the
                                   seed generators of dropout and random weightings: not weights, but
                                   part of the state) and metrics.npz (the epoch's metric accumulators)

A state folder is written completely, then `latest.json` is replaced
atomically to point at it, then older folders are deleted: a process killed
at any moment leaves the previous state loadable. A rerun with the same
output folder restores the newest state and skips the batches it had
already trained on (the training stream is deterministic for a seed), so it
ends with the weights of an uninterrupted run. The folder is removed when
training finishes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import keras
import numpy as np

from keras_mtmm.disk_space import disk_full_errors, model_bytes, require_free_space
from keras_mtmm.errors import TrainingDiverged
from keras_mtmm.run_folder import RunFolder

LATEST = "latest.json"
# A `.keras` archive, not `save_weights`' `.weights.h5`: Keras builds the archive's HDF5 file in memory
# and Python writes it, so a full disk is an OSError; HDF5 writing a file itself crashes the process
# (SIGSEGV) when a write fails half-way (tests/reliability/test_disk_full.py).
STATE_WEIGHTS = "weights.keras"


def read_training_state(backup_dir: str | Path) -> dict | None:
    """The newest complete training state of a run ({"epoch", "step", "global_step", "folder"}), or None."""
    path = Path(backup_dir) / LATEST
    if not path.is_file():
        return None
    state = json.loads(path.read_text(encoding="utf-8"))
    if not (Path(backup_dir) / state["folder"] / STATE_WEIGHTS).is_file():
        return None
    return state


def restore_training_state(model: keras.Model, backup_dir: str | Path, state: dict) -> None:
    """Load the model, optimizer and weighting state of `state` into `model` (built and compiled)."""
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    folder = Path(backup_dir) / state["folder"]
    model.load_weights(folder / STATE_WEIGHTS)
    variables = random_state_variables(model)
    with np.load(folder / "random.npz") as saved:
        if len(saved.files) != len(variables):
            raise ValueError(f"{folder}: the saved random state does not match this model")
        for i, variable in enumerate(variables):
            variable.assign(saved[f"arr_{i}"])


def random_state_variables(model: keras.Model) -> list:
    """The model's variables that `save_weights` leaves out: the seed generators' states."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


class StepCheckpoint(keras.callbacks.Callback):
    """Saves the training state every `every` steps (0: only at epoch ends) and at every epoch end.

    Args:
        backup_dir: the run's `backup/` folder.
        steps_per_epoch: training steps per epoch.
        every: steps between saves within an epoch (0: none).
        start_step: the step within the first epoch this fit call starts at (a resumed run).
        resume_metrics: the saved metric accumulators to add back in the first step (a run
            resumed in the middle of an epoch), so the epoch's logged means cover all its steps.
    """

    def __init__(self, backup_dir, steps_per_epoch: int, every: int = 0, start_step: int = 0, resume_metrics=None):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.steps_per_epoch = steps_per_epoch
        self.every = every
        self.start_step = start_step
        self.resume_metrics = resume_metrics
        self.epoch = 0
        self.first_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.first_epoch is None:
            self.first_epoch = epoch

    def _step(self, batch: int) -> int:
        offset = self.start_step if self.epoch == self.first_epoch else 0
        return offset + batch + 1

    def on_train_batch_end(self, batch, logs=None):
        if self.resume_metrics is not None:
            add_metric_state(self.model, self.resume_metrics)
            self.resume_metrics = None
        step = self._step(batch)
        if self.every and step % self.every == 0 and step < self.steps_per_epoch:
            self.save(self.epoch, step)

    def on_epoch_end(self, epoch, logs=None):
        self.save(epoch + 1, 0)

    def save(self, epoch: int, step: int) -> None:
        global_step = epoch * self.steps_per_epoch + step
        folder = f"state-{global_step}"
        target = self.backup_dir / folder
        staging = self.backup_dir / f".{folder}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        kept = f"the last complete state in {self.backup_dir} is kept" if read_training_state(self.backup_dir) else ""
        fix = f"free disk space there and rerun the same command ({kept or 'no state was saved yet'})"
        # The state and best.keras each hold about the model's and optimizer's variables.
        require_free_space(self.backup_dir, 2 * model_bytes(self.model), "the training state", fix)
        try:
            with disk_full_errors(self.backup_dir, "the training state", fix):
                staging.mkdir(parents=True)
                self.model.save(staging / STATE_WEIGHTS)
                randoms = [keras.ops.convert_to_numpy(v) for v in random_state_variables(self.model)]
                np.savez(staging / "random.npz", *randoms)
                np.savez(staging / "metrics.npz", *(metric_state(self.model) if step else []))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
        latest = {"epoch": epoch, "step": step, "global_step": global_step, "folder": folder}
        pointer = self.backup_dir / f".{LATEST}.tmp"
        pointer.write_text(json.dumps(latest), encoding="utf-8")
        os.replace(pointer, self.backup_dir / LATEST)
        for old in self.backup_dir.glob("state-*"):
            if old.name != folder:
                shutil.rmtree(old, ignore_errors=True)


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keras' `ModelCheckpoint` (save_best_only), its file replaced whole: written beside it, then renamed.

    A full disk or a kill in the middle of a save leaves the previous best
    checkpoint as it was, never a truncated one.
    """

    def _save_model(self, epoch, batch, logs):
        final = Path(self.filepath)
        staging = final.with_name(f".{final.stem}.tmp{final.suffix}")
        staging.unlink(missing_ok=True)
        self.filepath = str(staging)
        try:
            with disk_full_errors(final.parent, final.name, "free disk space there and rerun the same command"):
                super()._save_model(epoch, batch, logs)
        except BaseException:
            staging.unlink(missing_ok=True)
            raise
        finally:
            self.filepath = str(final)
        if staging.exists():
            os.replace(staging, final)


def metric_state(model: keras.Model) -> list[np.ndarray]:
    """The values of the model's metric accumulators (loss trackers included), in a stable order."""
    return [np.asarray(keras.ops.convert_to_numpy(v)) for m in model.metrics for v in m.variables]


def saved_metric_state(backup_dir: str | Path, state: dict) -> list[np.ndarray] | None:
    if not state["step"]:
        return None
    with np.load(Path(backup_dir) / state["folder"] / "metrics.npz") as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def add_metric_state(model: keras.Model, saved: list[np.ndarray]) -> None:
    """Add saved accumulators to the current ones (totals, counts, confusion counts all add up)."""
    variables = [v for m in model.metrics for v in m.variables]
    if len(variables) != len(saved):
        return  # a different set of metrics: the resumed epoch's means cover its remaining steps only
    for variable, value in zip(variables, saved):
        variable.assign(variable + keras.ops.cast(value, variable.dtype))


class NonFiniteGuard(keras.callbacks.Callback):
    """Stops training with `TrainingDiverged` when the loss turns NaN or infinite.

    Runs before the checkpoint callbacks, so the step that diverged is never
    saved: the last good state in `backup/` stays loadable, and the caller
    exports nothing. The message names the tasks whose running losses are
    non-finite, and the epoch and step.
    """

    def __init__(self, task_names: list[str], run_dir):
        super().__init__()
        self.task_names = list(task_names)
        self.run_dir = Path(run_dir)
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        loss = logs.get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        bad = [t for t in self.task_names if not math.isfinite(float(logs.get(f"{t}_loss", float("nan"))))]
        backup = self.run_dir / RunFolder.BACKUP
        state = read_training_state(backup)
        kept = (
            f"the last good state (epoch {state['epoch']}, step {state['step']}) is in {backup}"
            if state
            else "no training state was saved yet"
        )
        raise TrainingDiverged(
            "training",
            f"the loss became {float(loss)} at epoch {self.epoch} step {batch + 1}"
            f" (non-finite task losses: {', '.join(bad) or 'none; the weighting or regularisation term'})",
            f"nothing was exported; {kept}. Lower training.learning_rate, or check those tasks' labels and"
            " features for extreme values",
        )
