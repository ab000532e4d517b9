"""The run's own Keras callbacks: task weights into the logs, history.json, early stopping that resumes."""

from __future__ import annotations

import time
from pathlib import Path

import keras

from keras_mtmm.data.pipeline import data_errors
from keras_mtmm.data.tables import iter_tables
from keras_mtmm.evaluation.scoring import score_batches
from keras_mtmm.files import write_json
from keras_mtmm.run_folder import read_history
from keras_mtmm.tasks import get_task_type


class WeightingLogger(keras.callbacks.Callback):
    """Adds the epoch's mean task weights (`weight_<task>`) to the logs, so history and TensorBoard show them.

    Also hands the epoch's mean training losses to the strategy (DWA updates
    its weights from them) and, for uncertainty weighting, logs σ per task.
    """

    def __init__(self, weighting, keep_first: bool = False):
        super().__init__()
        self.weighting = weighting
        self.keep_first = keep_first  # a run resumed inside an epoch keeps the epoch's restored records

    def on_epoch_begin(self, epoch, logs=None):
        if self.keep_first:
            self.keep_first = False
            return
        self.weighting.reset_recorded_weights()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for task, weight in self.weighting.mean_recorded_weights().items():
            logs[f"weight_{task}"] = weight
        if hasattr(self.weighting, "mean_cosines"):  # gradient strategies: task conflicts, for the report
            for pair, cosine in self.weighting.mean_cosines().items():
                logs[f"grad_cosine_{pair}"] = cosine
        if hasattr(self.weighting, "sigmas"):
            for task, sigma in self.weighting.sigmas().items():
                logs[f"sigma_{task}"] = sigma
        losses = {task: logs.get(f"{task}_loss") for task in self.weighting.task_names}
        if all(value is not None for value in losses.values()):
            self.weighting.on_epoch_end(epoch, {task: float(value) for task, value in losses.items()})


class DataPass(keras.callbacks.Callback):
    """Sets the variable a per-epoch training dataset reads to the epoch's number, as each epoch begins.

    With `ExecutionPlan.epoch_passes`, epoch e trains on data pass e of the
    cache (`data.pipeline.make_dataset(pass_number=...)`): Keras makes the
    epoch's iterator after `on_epoch_begin`, so the pass is read then.
    """

    def __init__(self, pass_number):
        super().__init__()
        self.pass_number = pass_number

    def on_epoch_begin(self, epoch, logs=None):
        self.pass_number.assign(int(epoch))


class HistoryWriter(keras.callbacks.Callback):
    """Writes `history.json` after every epoch; a resumed run continues the same file.

    The file holds one list per logged value plus `epoch` (0-based) and
    `epoch_time_s` (wall time of the epoch, validation included). When a
    run resumes at epoch k (BackupAndRestore), records from epoch k on are
    dropped first, so the file always describes one continuous run.
    """

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        self.records: list[dict[str, float]] | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()
        if self.records is None:
            previous = read_history(self.path) if epoch > 0 else {}
            epochs = previous.get("epoch", [])
            self.records = [
                {key: values[i] for key, values in previous.items()} for i in range(len(epochs)) if epochs[i] < epoch
            ]

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": int(epoch), **{key: float(value) for key, value in (logs or {}).items()}}
        record["epoch_time_s"] = time.perf_counter() - self.epoch_started
        self.records.append(record)
        keys = list(dict.fromkeys(key for r in self.records for key in r))
        columns = {key: [r.get(key) for r in self.records] for key in keys}
        write_json(self.path, columns)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that, in a resumed run, starts from the best value and patience the history shows."""

    def __init__(self, history_path, resuming: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.history_path = Path(history_path)
        self.resuming = resuming

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if not self.resuming:
            return
        seen = read_history(self.history_path).get(self.monitor, [])
        values = [v if v is not None else float("inf") for v in seen]
        if values:
            best_at = values.index(min(values))
            self.best = values[best_at]
            self.wait = len(values) - 1 - best_at


class ValidationScores(keras.callbacks.Callback):
    """The validation metrics of each epoch as evaluation computes them: `score_tasks`, the task types'
    one definition (exact AUC by Mann-Whitney U, ...), in place of Keras' running estimates (Keras' AUC
    sums 200 thresholds). So `val_<task>_<metric>` in history.json for the kept epoch equals what
    `evaluate.py --split validation` reports for best.keras. `val_loss` stays Keras' (it picks the checkpoint).

    Args:
        predict: raw inputs -> outputs of the network being trained (`in_memory_predictor`).
        split: the validation split (a column table or a streamed split).
        metadata: the model metadata (tasks, their metrics and inputs).
        batch_size: rows per prediction call.
    """

    def __init__(self, predict, split, metadata: dict, batch_size: int):
        super().__init__()
        self.predict, self.split, self.metadata, self.batch_size = predict, split, metadata, batch_size

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        with data_errors():
            batches = iter_tables(self.split, self.batch_size)
            report = score_batches(self.predict, batches, self.metadata, "", "validation")
        for task, scores in report["tasks"].items():
            own = get_task_type(self.metadata["tasks"][task]["type"]).numpy_metrics  # (no Keras metric: added)
            for metric, value in scores.items():
                key = f"val_{task}_{metric}"
                if (key in logs or metric in own) and metric not in ("loss", "labelled") and value is not None:
                    logs[key] = value
