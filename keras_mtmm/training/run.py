"""Training: one experiment config -> a run folder, a scored model and a TF Serving export.

The run folder (`training.output_dir/<name>` unless given) holds:

    config.yaml        the resolved config
    metadata.json      task weights, classes, inputs, versions
    preprocessor/      the adapted Preprocessor (state.json, vocabularies)
    best.keras         the best checkpoint (lowest validation loss)
    backup/            the training state while a run is in progress (checkpointing.py)
    logs/              TensorBoard logs (per-task losses, metrics, task weights)
    history.json       per-epoch losses, metrics and task weights
    metrics.json       the test split's metrics (the metrics JSON)
    evaluation.npz     the test split's predictions, targets, label masks (first rows; for the report)
    inspection.json    gates and modality weights on the validation split (for the report)
    data_sizes.json    examples per split, labelled examples per task and split
    split_manifest.json  which source rows (CSV lines, row indices) went to which split (data/manifest.py)
    timings.json       prepare/fit/export/total seconds, training examples per second

Re-running with the same output folder and config after an interruption
resumes from the last saved step (`training.checkpoint_every`; see checkpointing.py).
A finished run (its folder has timings.json) is never replaced unless `overwrite` (`--overwrite`).
"""

from __future__ import annotations

import copy
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_mtmm.config.data import absolute_data_paths
from keras_mtmm.data.pipeline import data_errors, make_dataset, make_mixed_dataset
from keras_mtmm.data.sampling import build_sampler, describe_probabilities
from keras_mtmm.data.splits import no_test_reason
from keras_mtmm.data.tables import (
    StreamSplit,
    as_table,
    iter_tables,
    load_splits,
    num_rows,
    skipped_records,
    warmup_split,
)
from keras_mtmm.errors import ConfigError, DataError
from keras_mtmm.evaluation.scoring import format_table, in_memory_predictor, score_batches, write_report
from keras_mtmm.export.repository import check_request
from keras_mtmm.export.saved_model import export_model, model_metadata
from keras_mtmm.models.multitask import build_model, compile_model
from keras_mtmm.preprocessing.preprocessor import Preprocessor
from keras_mtmm.training.callbacks import DataPass, HistoryWriter, ResumableEarlyStopping, WeightingLogger, read_history
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
from keras_mtmm.training.result import TrainResult, seed_everything  # noqa: F401 (part of this module's API)
from keras_mtmm.training.run_files import write_summaries, write_timings
from keras_mtmm.training.run_guards import (  # noqa: F401
    adapt_preprocessor,
    check_labels,
    check_not_finished,
    check_same_data,
    check_writable_folder,
    clear_finished_run,
)
from keras_mtmm.weighting import resolve_task_weights


def train(
    config,
    output_dir: str | Path | None = None,
    export_dir: str | Path | None = None,
    export: bool = True,
    verbose: int | str = "auto",
    data=None,
    labels: list[str] | None = None,
    keep: int | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train, score on the test split and export the model an experiment config describes.

    Args:
        config: a validated `ExperimentConfig`.
        output_dir: the run folder; default `training.output_dir/<name>`.
        export_dir: the model repository root; default `export.dir`.
        export: write a SavedModel version for TF Serving.
        verbose: Keras' fit verbosity.
        data: with `data.source: memory`, the examples: a pandas DataFrame or a
            dict of equal-length columns (split by the config's fractions).
        labels: TF Serving version labels to point at the new export.
        keep: prune the repository to this many versions (labelled ones stay).
        overwrite: replace a finished run in the run folder (without it, such a rerun is refused).
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    config = copy.deepcopy(config)
    if export:  # a refused version, label or keep is found now, not after the training
        check_request(config.name, config.export.version, labels, keep)
        check_writable_folder(export_dir if export_dir is not None else config.export.dir, "--export-dir")
    check_writable_folder(output_dir if output_dir else Path(config.training.output_dir) / config.name, "--output-dir")
    check_not_finished(output_dir if output_dir else Path(config.training.output_dir) / config.name, overwrite)
    absolute_data_paths(config)  # the resolved config must find the data from any folder
    # Multi-worker collectives must be configured before TensorFlow runs anything: the strategy comes first.
    strategy = make_strategy(config.training.distribute)
    multi_worker = config.training.distribute == "multi_worker"
    chief = is_chief(strategy)
    seed_everything(config.seed, config.training.deterministic)
    load_started = time.perf_counter()
    splits = load_splits(config, data=data)  # bad data fails here, before anything is written
    timings["load_s"] = time.perf_counter() - load_started  # reading and checking every split

    shared_run_dir = Path(output_dir) if output_dir else Path(config.training.output_dir) / config.name
    # Only the chief writes the run folder; other workers write to a temporary one (as TF requires).
    run_dir = shared_run_dir if chief else Path(tempfile.mkdtemp(prefix="keras_mtmm_worker_"))
    if overwrite and chief:
        clear_finished_run(shared_run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = read_training_state(shared_run_dir / "backup")  # every worker resumes from the chief's state
    stored = shared_run_dir / "config.yaml"
    if state is not None and stored.is_file() and stored.read_text(encoding="utf-8") != config.to_yaml():
        raise ConfigError(
            "--output-dir",
            f"{shared_run_dir} holds an interrupted run of a different config (its backup/ would be resumed)",
            "rerun with the same config and --set flags to resume, or pass another --output-dir"
            f" (or delete {shared_run_dir / 'backup'} to start over there)",
        )
    check_same_data(shared_run_dir, run_dir, splits, resuming=state is not None, source=config.data.source)
    (run_dir / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    preprocessor = Preprocessor.from_config(config)
    with data_errors():  # adapting reads the first rows: a corrupt shard can show here
        label_counts = adapt_preprocessor(preprocessor, config, splits["train"], run_dir / "preprocessor")
    check_labels(preprocessor, splits)
    configured = {task: task_config.weight for task, task_config in config.tasks.items()}
    task_weights = resolve_task_weights(config.weighting.strategy, configured, label_counts)
    metadata = model_metadata(config, preprocessor, task_weights)
    skipped = skipped_records(splits, config)
    print(f"run folder: {run_dir}")
    print("examples: " + ", ".join(f"{split}={num_rows(table)}" for split, table in splits.items()))
    print("labelled training examples: " + ", ".join(f"{task}={count}" for task, count in label_counts.items()))
    if skipped is not None:
        metadata["skipped_records"] = skipped
        print(f"bad records skipped (data.on_bad_record: skip): {skipped['count']}")
    print(f"task weights ({config.weighting.strategy}): " + ", ".join(f"{t}={w:.4g}" for t, w in task_weights.items()))
    timings["prepare_s"] = time.perf_counter() - started

    training = config.training
    skip_bad = config.data.on_bad_record == "skip"
    valid_rows = (skipped or {}).get("valid_rows", {})
    backup_dir = run_dir / "backup"

    def training_stream(skip_batches: int):
        """The training batches from `skip_batches` on: one deterministic stream over all epochs
        (with `plan.epoch_passes`: each iteration the pass of the epoch `pass_number` holds)."""
        if isinstance(splits["train"], StreamSplit):
            data, _ = mixed(steps_per_epoch)
            return data.skip(skip_batches) if skip_batches else data
        return make_dataset(
            preprocessor,
            splits["train"],
            training.batch_size,
            shuffle=True,
            seed=config.seed,
            shuffle_buffer=training.shuffle_buffer,
            repeat=steps_per_epoch is not None and not plan.epoch_passes,
            cache=plan.cache,
            skip_bad=skip_bad,
            valid_rows=valid_rows.get("train"),
            skip_batches=0 if plan.epoch_passes else skip_batches,
            pass_number=pass_number if plan.epoch_passes else None,
        )

    def mixed(steps):
        return make_mixed_dataset(
            preprocessor,
            splits["train"],
            training.batch_size,
            config.data.mixing,
            build_sampler(config.data.sampler, config.data.temperature),
            training.epochs,
            steps,
            seed=config.seed,
            shuffle_buffer=training.shuffle_buffer,
            skip_bad=skip_bad,
        )

    if isinstance(splits["train"], StreamSplit):
        steps_per_epoch = training.steps_per_epoch or -(-num_rows(splits["train"]) // training.batch_size)
        _, schedule = mixed(steps_per_epoch)
        metadata["sampling"] = {
            "mixing": config.data.mixing,
            "sampler": config.data.sampler,
            "sizes": {name: num_rows(part) for name, part in splits["train"].parts.items()},
            "steps_per_epoch": steps_per_epoch,
            "probabilities": schedule,
        }
        first, last = describe_probabilities(schedule[0]), describe_probabilities(schedule[-1])
        print(
            f"datasets mixed {config.data.mixing} ({config.data.sampler}): {first}"
            + (f" -> {last} (last epoch)" if first != last else "")
        )
    else:
        # A known epoch length makes the training data one repeated stream, which a resumed run re-enters
        # at the step it stopped (TFRecords with skipped bad records and no count: epochs restart instead).
        epoch_rows = valid_rows.get("train") if skip_bad else num_rows(splits["train"])
        steps_per_epoch = training.steps_per_epoch or (
            -(-epoch_rows // training.batch_size) if epoch_rows is not None else None
        )
    with data_errors():  # the cache's size is measured on a preprocessed batch: a bad record can show here
        plan = plan_execution(config, preprocessor, splits["train"], steps_per_epoch, run_dir if state else None)
    metadata["execution"] = plan.to_dict()
    print(plan.describe())
    with strategy.scope():
        network = build_model(config, preprocessor)
        model = compile_model(
            network,
            config,
            preprocessor,
            task_weights,
            seed=config.seed,
            steps_per_epoch=steps_per_epoch or -(-num_rows(splits["train"]) // training.batch_size),
            jit_compile=plan.jit_compile,
            steps_per_execution=plan.steps_per_execution,
        )
    metadata["reproducibility"] = {
        "seed": config.seed,
        "deterministic": training.deterministic,
        "distribute": training.distribute,
        "replicas": strategy.num_replicas_in_sync,
        "python": platform.python_version(),
        "numpy": np.__version__,
        **metadata["versions"],
    }
    if strategy.num_replicas_in_sync > 1:
        print(
            f"training on {strategy.num_replicas_in_sync} replicas ({training.distribute}); "
            f"this process: {worker_description(strategy)}{' (chief)' if chief and multi_worker else ''}"
        )
    (run_dir / "metadata.json").write_text(json.dumps(metadata, indent=1), encoding="utf-8")
    has_validation = num_rows(splits["validation"]) > 0
    validation_data = (
        make_dataset(
            preprocessor,
            splits["validation"],
            training.batch_size,
            split="validation",
            skip_bad=skip_bad,
            valid_rows=valid_rows.get("validation"),
        )
        if has_validation
        else None
    )
    monitor = "val_loss" if has_validation else "loss"
    best_path = run_dir / "best.keras"
    history_path = run_dir / "history.json"
    best_so_far = None
    start_epoch, start_step, resume_metrics = 0, 0, None
    if state is not None:  # resuming: restore the state, and the checkpoint must beat what the run saw
        with strategy.scope():  # the optimizer's slots are created on restore
            restore_training_state(model, shared_run_dir / "backup", state)
        start_epoch, start_step = state["epoch"], state["step"]
        resume_metrics = saved_metric_state(shared_run_dir / "backup", state)
        seen = [v for v in read_history(history_path).get(monitor, []) if v is not None]
        best_so_far = min(seen) if seen else None
        print(f"resuming the interrupted run in {run_dir} at epoch {start_epoch} step {start_step}")
    elif backup_dir.exists():
        shutil.rmtree(backup_dir)
    if multi_worker and steps_per_epoch is None:
        raise DataError(
            "data.on_bad_record",
            "multi_worker training needs the number of valid training records, which was not counted",
            "set training.steps_per_epoch, or use data.on_bad_record: error",
        )
    if steps_per_epoch is None and start_step:
        start_step, resume_metrics = 0, None  # no stream to re-enter: the epoch starts again
    weighting_logger = WeightingLogger(model.weighting, keep_first=start_step > 0)
    step_checkpoint = StepCheckpoint(
        backup_dir, steps_per_epoch or 0, training.checkpoint_every, start_step, resume_metrics
    )
    pass_number = tf.Variable(0, dtype=tf.int64, trainable=False)  # the epoch's pass (plan.epoch_passes)
    callbacks = [
        DataPass(pass_number),
        NonFiniteGuard(list(config.tasks), run_dir),  # first: a diverged step is never saved
        weighting_logger,
        HistoryWriter(history_path),
        step_checkpoint,
        AtomicModelCheckpoint(
            str(best_path), monitor=monitor, save_best_only=True, initial_value_threshold=best_so_far
        ),
        early_stopping := ResumableEarlyStopping(
            history_path, resuming=state is not None, monitor=monitor, patience=training.early_stopping_patience
        ),
        keras.callbacks.TensorBoard(str(run_dir / "logs")),
    ]
    # A run resumed inside an epoch first finishes that epoch, then runs the others: two fit calls.
    phases = []
    if start_step:
        phases.append((start_epoch, start_epoch + 1, steps_per_epoch - start_step))
        start_epoch += 1
    if start_epoch < training.epochs:
        phases.append((start_epoch, training.epochs, steps_per_epoch))
    first_run_epoch = phases[0][0] if phases else training.epochs  # the first epoch this process trains
    fit_started = time.perf_counter()
    consumed = state["global_step"] if state is not None and steps_per_epoch else 0
    with data_errors():
        for first_epoch, last_epoch, steps in phases:
            if multi_worker:
                stream = training_stream(consumed)
                # A CallbackList per phase, as fit makes one per call (TensorBoard reopens its writers).
                callback_list = keras.callbacks.CallbackList(callbacks, model=model)
                fit_loop(model, strategy, stream, validation_data, first_epoch, last_epoch, steps, callback_list)
            else:
                model.fit(
                    training_stream(consumed) if steps_per_epoch else training_stream(0),
                    validation_data=validation_data,
                    initial_epoch=first_epoch,
                    epochs=last_epoch,
                    steps_per_epoch=None if plan.epoch_passes else steps,  # a pass's dataset ends with the epoch
                    callbacks=callbacks,
                    shuffle=False,  # the dataset reshuffles itself every epoch
                    verbose=verbose,
                )
            consumed += (last_epoch - first_epoch) * (steps or 0)
            step_checkpoint.start_step = 0
            early_stopping.resuming = True  # the next phase continues this run's history
            if model.stop_training:
                break
    shutil.rmtree(backup_dir, ignore_errors=True)
    timings["fit_s"] = time.perf_counter() - fit_started
    if best_path.exists():
        model.load_weights(best_path)
    history_data = read_history(history_path)
    if not chief:  # the chief scores and exports; this worker's files were temporary
        shutil.rmtree(run_dir, ignore_errors=True)
        timings["total_s"] = time.perf_counter() - started
        return TrainResult(
            shared_run_dir, network, preprocessor, task_weights, history_data, None, None, timings, model, chief=False
        )
    if config.weighting.strategy not in ("static", "inverse_size"):
        # Scores are reported with the weights of the epoch whose checkpoint was kept.
        monitored = [v if v is not None else float("inf") for v in history_data.get(monitor, [])]
        kept = monitored.index(min(monitored)) if monitored else -1
        used = {task: history_data[f"weight_{task}"][kept] for task in config.tasks if f"weight_{task}" in history_data}
        if len(used) == len(config.tasks):
            metadata["base_task_weights"] = metadata["task_weights"]
            metadata["task_weights"] = used
            (run_dir / "metadata.json").write_text(json.dumps(metadata, indent=1), encoding="utf-8")

    metrics = None
    predict = in_memory_predictor(probe_network(network), preprocessor)  # task and encoder outputs
    if num_rows(splits["test"]) > 0:
        with data_errors():
            dump = run_dir / "evaluation.npz"  # the first rows' predictions, for the run report's plots
            batches = iter_tables(splits["test"], training.batch_size)
            metrics = score_batches(predict, batches, metadata, str(best_path), "test", dump=dump)
        write_report(metrics, run_dir / "metrics.json")
        print(format_table(metrics))
    else:
        print(f"note: no test split ({no_test_reason(config.data)}): no test metrics")
    health = check_health(predict, splits, metadata, training.batch_size)
    write_summaries(run_dir, network, preprocessor, splits, metadata, label_counts, health)  # for the run report

    export_path = None
    if export:
        export_started = time.perf_counter()
        export_path = export_model(
            network,
            preprocessor,
            config.to_yaml(),
            metadata,
            export_dir if export_dir is not None else config.export.dir,
            config.name,
            config.export.version,
            warmup_inputs=preprocessor.raw_inputs(as_table(warmup_split(splits), 8)),
            labels=labels,
            keep=keep,
        )
        timings["export_s"] = time.perf_counter() - export_started
        print(f"exported for TF Serving: {export_path}")
    timings["total_s"] = time.perf_counter() - started
    write_timings(run_dir / "timings.json", timings, history_data, first_run_epoch, num_rows(splits["train"]))
    return TrainResult(run_dir, network, preprocessor, task_weights, history_data, metrics, export_path, timings, model)
