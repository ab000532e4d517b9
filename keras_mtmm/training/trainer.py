"""The Trainer: one experiment config -> a run folder, a scored model and a TF Serving export, in named phases.

    set_up          refuse what would fail late (flags, folders), the distribution strategy, seeds,
                    load every split (bad data fails here, before anything is written), open the run
                    folder (resume state, config, data fingerprint, split manifest)
    prepare_data    adapt the Preprocessor, task weights, metadata, the training streams (streams.py),
                    the epoch length and execution plan
    build           the network and its compiled MultiTaskModel (a resumed run restores its state)
    make_callbacks  history, checkpoints, early stopping, weighting logs, TensorBoard
    fit             Keras fit (or the custom loop for multi-worker), resuming inside an epoch
    finalize        the kept checkpoint, test metrics, the report's files, the export, timings

Each phase is a method: a subclass (or a test) replaces one and keeps the others. The run
folder's files are named and written by `keras_mtmm.run_folder.RunFolder`. Re-running with
the same output folder and config after an interruption resumes from the last saved step
(`training.checkpoint_every`; see checkpointing.py); a finished run is never replaced unless
`overwrite` (`--overwrite`).
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from pathlib import Path

import keras

from keras_mtmm.config.data import absolute_data_paths
from keras_mtmm.data.pipeline import data_errors
from keras_mtmm.data.splits import no_test_reason
from keras_mtmm.data.tables import (
    as_table,
    iter_tables,
    load_splits,
    num_rows,
    skipped_records,
    warmup_split,
)
from keras_mtmm.errors import ConfigError, DataError
from keras_mtmm.evaluation.predictor import in_memory_predictor
from keras_mtmm.evaluation.scoring import format_table, score_batches, write_report
from keras_mtmm.export.repository import check_request
from keras_mtmm.export.saved_model import export_model, model_metadata
from keras_mtmm.models.multitask import compile_model
from keras_mtmm.models.network import build_model
from keras_mtmm.preprocessing.preprocessor import Preprocessor
from keras_mtmm.run_folder import RunFolder, kept_index
from keras_mtmm.training.callbacks import (
    DataPass,
    HistoryWriter,
    ResumableEarlyStopping,
    ValidationScores,
    WeightingLogger,
)
from keras_mtmm.training.checkpointing import (
    AtomicModelCheckpoint,
    NonFiniteGuard,
    StepCheckpoint,
    read_training_state,
    restore_training_state,
    saved_metric_state,
)
from keras_mtmm.training.distributed import make_strategy
from keras_mtmm.training.execution import plan_execution
from keras_mtmm.training.health import check_health, probe_network
from keras_mtmm.training.loop import fit_loop, is_chief, worker_description
from keras_mtmm.training.result import TrainResult, reproducibility, seed_everything
from keras_mtmm.training.run_files import write_summaries, write_timings
from keras_mtmm.training.run_guards import adapt_preprocessor, check_labels, check_same_data, check_writable_folder
from keras_mtmm.training.streams import TrainingStreams
from keras_mtmm.weighting import resolve_task_weights


class Trainer:
    """Train, score on the test split and export the model an experiment config describes (see `train`)."""

    def __init__(
        self,
        config,
        output_dir: str | Path | None = None,
        export_dir: str | Path | None = None,
        export: bool = True,
        verbose: int | str = "auto",
        data=None,
        labels: list[str] | None = None,
        keep: int | None = None,
        overwrite: bool = False,
    ):
        self.config = copy.deepcopy(config)
        self.folder = RunFolder(output_dir if output_dir else Path(config.training.output_dir) / config.name)
        self.export_dir = export_dir if export_dir is not None else config.export.dir
        self.export, self.verbose, self.data = export, verbose, data
        self.labels, self.keep, self.overwrite = labels, keep, overwrite
        self.timings: dict[str, float] = {}

    def run(self) -> TrainResult:
        """Every phase in order."""
        self.started = time.perf_counter()
        self.set_up()
        self.prepare_data()
        self.build()
        self.fit(self.make_callbacks())
        return self.finalize()

    # -- set up the run ---------------------------------------------------------------------------------------
    def set_up(self) -> None:
        config = self.config
        if self.export:  # a refused version, label or keep is found now, not after the training
            check_request(config.name, config.export.version, self.labels, self.keep)
            check_writable_folder(self.export_dir, "--export-dir")
        check_writable_folder(self.folder.path, "--output-dir")
        self.folder.check_not_finished(self.overwrite)
        absolute_data_paths(config)  # the resolved config must find the data from any folder
        # Multi-worker collectives must be configured before TensorFlow runs anything: the strategy comes first.
        self.strategy = make_strategy(config.training.distribute)
        self.multi_worker = config.training.distribute == "multi_worker"
        self.chief = is_chief(self.strategy)
        seed_everything(config.seed, config.training.deterministic)
        load_started = time.perf_counter()
        self.splits = load_splits(config, data=self.data)  # bad data fails here, before anything is written
        self.timings["load_s"] = time.perf_counter() - load_started  # reading and checking every split
        self.open_run_folder()

    def open_run_folder(self) -> None:
        """This process's run folder (only the chief writes the shared one; other workers write to a
        temporary one, as TF requires), the state to resume, the config and what the run trains on."""
        shared, config = self.folder, self.config
        self.run_folder = shared if self.chief else RunFolder(tempfile.mkdtemp(prefix="keras_mtmm_worker_"))
        if self.overwrite and self.chief:
            shared.clear()
        self.run_folder.path.mkdir(parents=True, exist_ok=True)
        self.state = read_training_state(shared / RunFolder.BACKUP)  # every worker resumes from the chief's state
        stored = shared / RunFolder.CONFIG
        if self.state is not None and stored.is_file() and shared.config_yaml() != config.to_yaml():
            raise ConfigError(
                "--output-dir",
                f"{shared.path} holds an interrupted run of a different config (its backup/ would be resumed)",
                "rerun with the same config and --set flags to resume, or pass another --output-dir"
                f" (or delete {shared / RunFolder.BACKUP} to start over there)",
            )
        check_same_data(shared, self.run_folder, self.splits, self.state is not None, source=config.data.source)
        self.run_folder.write_config(config.to_yaml())

    # -- prepare data -----------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        config, splits, run = self.config, self.splits, self.run_folder
        self.preprocessor = Preprocessor.from_settings(config)
        with data_errors():  # adapting reads the first rows: a corrupt shard can show here
            self.label_counts = adapt_preprocessor(
                self.preprocessor, config, splits["train"], run / RunFolder.PREPROCESSOR
            )
        check_labels(self.preprocessor, splits)
        configured = {task: task_config.weight for task, task_config in config.tasks.items()}
        self.task_weights = resolve_task_weights(config.weighting.strategy, configured, self.label_counts)
        self.metadata = model_metadata(config, self.preprocessor, self.task_weights)
        skipped = skipped_records(splits, config)
        print(f"run folder: {run.path}")
        print("examples: " + ", ".join(f"{split}={num_rows(table)}" for split, table in splits.items()))
        print("labelled training examples: " + ", ".join(f"{t}={count}" for t, count in self.label_counts.items()))
        if skipped is not None:
            self.metadata["skipped_records"] = skipped
            print(f"bad records skipped (data.on_bad_record: skip): {skipped['count']}")
        weights = ", ".join(f"{t}={w:.4g}" for t, w in self.task_weights.items())
        print(f"task weights ({config.weighting.strategy}): {weights}")
        self.timings["prepare_s"] = time.perf_counter() - self.started
        self.streams = TrainingStreams(config, self.preprocessor, splits, skipped)
        self.steps_per_epoch, sampling = self.streams.epoch_length()
        if sampling is not None:
            self.metadata["sampling"] = sampling
        with data_errors():  # the cache's size is measured on a preprocessed batch: a bad record can show here
            self.plan = plan_execution(
                config, self.preprocessor, splits["train"], self.steps_per_epoch, run.path if self.state else None
            )
        self.streams.plan = self.plan
        self.metadata["execution"] = self.plan.to_dict()
        print(self.plan.describe())

    # -- build ------------------------------------------------------------------------------------------------
    def build(self) -> None:
        config, training, strategy = self.config, self.config.training, self.strategy
        with strategy.scope():
            self.network = build_model(config, self.preprocessor)
            self.model = compile_model(
                self.network,
                config,
                self.preprocessor,
                self.task_weights,
                seed=config.seed,
                steps_per_epoch=self.steps_per_epoch or -(-num_rows(self.splits["train"]) // training.batch_size),
                jit_compile=self.plan.jit_compile,
                steps_per_execution=self.plan.steps_per_execution,
            )
        self.metadata["reproducibility"] = reproducibility(config, strategy, self.metadata["versions"])
        if strategy.num_replicas_in_sync > 1:
            chief = " (chief)" if self.chief and self.multi_worker else ""
            print(
                f"training on {strategy.num_replicas_in_sync} replicas ({training.distribute}); "
                f"this process: {worker_description(strategy)}{chief}"
            )
        self.run_folder.write_metadata(self.metadata)
        self.validation_data = self.streams.validation()
        self.monitor = "val_loss" if self.validation_data is not None else "loss"
        # Raw inputs -> task and encoder outputs, one trace: the validation scores and the test split's.
        self.predict = in_memory_predictor(probe_network(self.network), self.preprocessor)
        self.restore()

    def restore(self) -> None:
        """Where training starts: a resumed run restores its state, and its checkpoint must beat what it saw."""
        shared, backup = self.folder, self.run_folder / RunFolder.BACKUP
        self.best_so_far, self.start_epoch, self.start_step, self.resume_metrics = None, 0, 0, None
        if self.state is not None:
            with self.strategy.scope():  # the optimizer's slots are created on restore
                restore_training_state(self.model, shared / RunFolder.BACKUP, self.state)
            self.start_epoch, self.start_step = self.state["epoch"], self.state["step"]
            self.resume_metrics = saved_metric_state(shared / RunFolder.BACKUP, self.state)
            seen = [v for v in self.run_folder.history().get(self.monitor, []) if v is not None]
            self.best_so_far = min(seen) if seen else None
            where = f"epoch {self.start_epoch} step {self.start_step}"
            print(f"resuming the interrupted run in {self.run_folder.path} at {where}")
        elif backup.exists():
            shutil.rmtree(backup)
        if self.multi_worker and self.steps_per_epoch is None:
            raise DataError(
                "data.on_bad_record",
                "multi_worker training needs the number of valid training records, which was not counted",
                "set training.steps_per_epoch, or use data.on_bad_record: error",
            )
        if self.steps_per_epoch is None and self.start_step:
            self.start_step, self.resume_metrics = 0, None  # no stream to re-enter: the epoch starts again

    # -- callbacks --------------------------------------------------------------------------------------------
    def make_callbacks(self) -> list[keras.callbacks.Callback]:
        run, training = self.run_folder, self.config.training
        history = run / RunFolder.HISTORY
        self.step_checkpoint = StepCheckpoint(
            run / RunFolder.BACKUP,
            self.steps_per_epoch or 0,
            training.checkpoint_every,
            self.start_step,
            self.resume_metrics,
        )
        self.early_stopping = ResumableEarlyStopping(
            history, resuming=self.state is not None, monitor=self.monitor, patience=training.early_stopping_patience
        )
        best = AtomicModelCheckpoint(
            str(run / RunFolder.BEST),
            monitor=self.monitor,
            save_best_only=True,
            initial_value_threshold=self.best_so_far,
        )
        validation = self.splits["validation"] if self.validation_data is not None else None
        scores = (
            [ValidationScores(self.predict, validation, self.metadata, training.batch_size)]
            if validation is not None
            else []
        )
        return [
            DataPass(self.streams.pass_number),
            NonFiniteGuard(list(self.config.tasks), run.path),  # first: a diverged step is never saved
            *scores,  # before the callbacks that read the epoch's logs
            WeightingLogger(self.model.weighting, keep_first=self.start_step > 0),
            HistoryWriter(history),
            self.step_checkpoint,
            best,
            self.early_stopping,
            keras.callbacks.TensorBoard(str(run / RunFolder.LOGS)),
        ]

    # -- fit --------------------------------------------------------------------------------------------------
    def fit(self, callbacks: list[keras.callbacks.Callback]) -> None:
        """A run resumed inside an epoch first finishes that epoch, then runs the others: two fit calls."""
        model, steps_per_epoch, epochs = self.model, self.steps_per_epoch, self.config.training.epochs
        phases, start_epoch = [], self.start_epoch
        if self.start_step:
            phases.append((start_epoch, start_epoch + 1, steps_per_epoch - self.start_step))
            start_epoch += 1
        if start_epoch < epochs:
            phases.append((start_epoch, epochs, steps_per_epoch))
        self.first_run_epoch = phases[0][0] if phases else epochs  # the first epoch this process trains
        fit_started = time.perf_counter()
        consumed = self.state["global_step"] if self.state is not None and steps_per_epoch else 0
        with data_errors():
            for first_epoch, last_epoch, steps in phases:
                if self.multi_worker:
                    stream = self.streams.training(consumed)
                    # A CallbackList per phase, as fit makes one per call (TensorBoard reopens its writers).
                    callback_list = keras.callbacks.CallbackList(callbacks, model=model)
                    fit_loop(
                        model,
                        self.strategy,
                        stream,
                        self.validation_data,
                        first_epoch,
                        last_epoch,
                        steps,
                        callback_list,
                    )
                else:
                    model.fit(
                        self.streams.training(consumed) if steps_per_epoch else self.streams.training(0),
                        validation_data=self.validation_data,
                        initial_epoch=first_epoch,
                        epochs=last_epoch,
                        steps_per_epoch=None if self.plan.epoch_passes else steps,  # a pass's dataset ends with it
                        callbacks=callbacks,
                        shuffle=False,  # the dataset reshuffles itself every epoch
                        verbose=self.verbose,
                    )
                consumed += (last_epoch - first_epoch) * (steps or 0)
                self.step_checkpoint.start_step = 0
                self.early_stopping.resuming = True  # the next phase continues this run's history
                if model.stop_training:
                    break
        shutil.rmtree(self.run_folder / RunFolder.BACKUP, ignore_errors=True)
        self.timings["fit_s"] = time.perf_counter() - fit_started

    # -- finalize ---------------------------------------------------------------------------------------------
    def finalize(self) -> TrainResult:
        """The kept checkpoint's weights; on the chief: test metrics, the report's files, the export, timings."""
        run, best = self.run_folder, self.run_folder / RunFolder.BEST
        if best.exists():
            self.model.load_weights(best)
        self.history = run.history()
        if not self.chief:  # the chief scores and exports; this worker's files were temporary
            shutil.rmtree(run.path, ignore_errors=True)
            self.timings["total_s"] = time.perf_counter() - self.started
            return self.result(None, None, chief=False)
        self.record_kept_weights()
        metrics = self.score_test(self.predict)
        health = check_health(self.predict, self.splits, self.metadata, self.config.training.batch_size)
        write_summaries(run, self.network, self.preprocessor, self.splits, self.metadata, self.label_counts, health)
        export_path = self.export_version() if self.export else None
        self.timings["total_s"] = time.perf_counter() - self.started
        train_rows = num_rows(self.splits["train"])
        write_timings(run / RunFolder.TIMINGS, self.timings, self.history, self.first_run_epoch, train_rows)
        return self.result(metrics, export_path)

    def record_kept_weights(self) -> None:
        """Scores are reported with the task weights of the epoch whose checkpoint was kept."""
        if self.config.weighting.strategy in ("static", "inverse_size"):
            return
        kept = kept_index(self.history)
        kept = -1 if kept is None else kept
        tasks = self.config.tasks
        used = {task: self.history[f"weight_{task}"][kept] for task in tasks if f"weight_{task}" in self.history}
        if len(used) == len(tasks):
            self.metadata["base_task_weights"] = self.metadata["task_weights"]
            self.metadata["task_weights"] = used
            self.run_folder.write_metadata(self.metadata)

    def score_test(self, predict) -> dict | None:
        """The test split's metrics JSON (and the evaluation dump for the report); None without a test split."""
        run, test = self.run_folder, self.splits["test"]
        if num_rows(test) == 0:
            print(f"note: no test split ({no_test_reason(self.config.data)}): no test metrics")
            return None
        with data_errors():
            batches = iter_tables(test, self.config.training.batch_size)
            metrics = score_batches(
                predict, batches, self.metadata, str(run / RunFolder.BEST), "test", dump=run / RunFolder.EVALUATION
            )
        write_report(metrics, run / RunFolder.METRICS)
        print(format_table(metrics))
        return metrics

    def export_version(self) -> Path:
        export_started = time.perf_counter()
        path = export_model(
            self.network,
            self.preprocessor,
            self.config.to_yaml(),
            self.metadata,
            self.export_dir,
            self.config.name,
            self.config.export.version,
            warmup_inputs=self.preprocessor.raw_inputs(as_table(warmup_split(self.splits), 8)),
            labels=self.labels,
            keep=self.keep,
        )
        self.timings["export_s"] = time.perf_counter() - export_started
        print(f"exported for TF Serving: {path}")
        return path

    def result(self, metrics, export_path, chief: bool = True) -> TrainResult:
        run_dir = self.run_folder.path if chief else self.folder.path
        return TrainResult(
            run_dir,
            self.network,
            self.preprocessor,
            self.task_weights,
            self.history,
            metrics,
            export_path,
            self.timings,
            self.model,
            chief=chief,
        )
