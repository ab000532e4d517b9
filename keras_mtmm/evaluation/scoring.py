"""Evaluation: per-task losses and metrics, the total weighted loss, reports.

The scores are computed in NumPy from the model's outputs, so an exported
version (run through its serving signature, exactly as TF Serving runs it)
and an in-memory or `.keras` model are scored by the same code. For each task
only its labelled examples count; the task loss is the mean over them,
computed as Keras computes it, and the total is `L = Σ_i w_i L_i` with the
weights the model was trained with.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from keras_mtmm.config.schema import config_from_dict, load_config
from keras_mtmm.data.manifest import join_row_ids, row_ids_of
from keras_mtmm.data.pipeline import data_errors
from keras_mtmm.data.tables import iter_tables, label_column, load_file, load_splits, modality_inputs, num_rows
from keras_mtmm.errors import DataError, UnknownLabel, UserError, locate_label
from keras_mtmm.evaluation.tracing import traced_once
from keras_mtmm.evaluation.transfer import format_comparison
from keras_mtmm.evaluation.transfer_seeds import compare_with_baselines as compare_runs
from keras_mtmm.export.saved_model import is_saved_model, read_export_metadata
from keras_mtmm.layers.heads import get_task_type
from keras_mtmm.models.multitask import load_checkpoint
from keras_mtmm.preprocessing.preprocessor import Preprocessor
from keras_mtmm.training.run_files import evaluation_dump_path, write_evaluation_dump

SPLIT_NAMES = ("train", "validation", "test")


def score_tasks(
    predictions: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    masks: dict[str, np.ndarray],
    metadata: dict,
) -> dict:
    """Per-task loss and metrics on labelled rows, and the total weighted loss.

    Args:
        predictions: model outputs per task.
        targets: encoded targets per task (as `TaskType.encode` makes them).
        masks: 1 where the task's label is present, 0 where it is missing.
        metadata: the model metadata (`export.model_metadata`): task types,
            metrics, target scales, task weights.

    Returns:
        `{"loss": Σ w_i L_i, "weights": {...}, "tasks": {task: {"loss", <metric>..., "labelled"}}}`.
    """
    tasks = {}
    total = 0.0
    for task, spec in metadata["tasks"].items():
        task_type = get_task_type(spec["type"])
        labelled = masks[task] > 0
        count = int(labelled.sum())
        metric_names = spec.get("metrics") or list(task_type.default_metrics)
        if count == 0:
            result = {"loss": 0.0, **{m: None for m in metric_names}}
        else:
            prediction = np.asarray(predictions[task])[labelled]
            target = np.asarray(targets[task])[labelled]
            losses = task_type.example_losses(prediction, target, spec.get("target_scale", 1.0))
            result = {
                "loss": float(np.mean(losses)),
                **task_type.score(prediction, target, metric_names, spec.get("top_k", 2)),
            }
        result["labelled"] = count
        tasks[task] = result
        total += metadata["task_weights"][task] * result["loss"]
    return {"loss": float(total), "weights": dict(metadata["task_weights"]), "tasks": tasks}


def encode_targets(table: dict[str, np.ndarray], metadata: dict) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Encode a table's raw labels with the classes the model was trained with."""
    targets, masks = {}, {}
    separator = metadata.get("label_separator", "|")
    for task, spec in metadata["tasks"].items():
        where = f"tasks.{task}.label (column '{spec['label']}')"
        # A table without the column (another task's dataset) is unlabelled for the task; the data
        # loaders check that every configured column is where it should be.
        column = label_column(table, spec["label"], spec["type"] == "regression")
        try:
            targets[task], masks[task] = get_task_type(spec["type"]).encode(column, spec["classes"], where, separator)
        except UnknownLabel as error:
            raise locate_label(error, table, spec["label"], task) from None
    return targets, masks


def metrics_report(model_name: str, split: str, examples: int, scores: dict) -> dict:
    """The metrics JSON (the README's "The run folder and the export")."""
    return {"model": model_name, "split": split, "examples": int(examples), **scores}


def format_table(report: dict) -> str:
    """A plain-text table of per-task metrics."""
    lines = [f"{report['model']} on {report['split']} ({report['examples']} examples)"]
    header = f"  {'task':<14}{'labelled':>9}  {'weight':>7}  {'loss':>9}  metrics"
    lines.append(header)
    for task, result in report["tasks"].items():
        metrics = "  ".join(
            f"{name}={_format(value)}" for name, value in result.items() if name not in ("loss", "labelled")
        )
        weight = report["weights"][task]
        lines.append(f"  {task:<14}{result['labelled']:>9}  {weight:>7.3g}  {_format(result['loss']):>9}  {metrics}")
    lines.append(f"  total weighted loss Σ w_i L_i = {_format(report['loss'])}")
    return "\n".join(lines)


def _format(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}"


def write_report(report: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1), encoding="utf-8")


# ---------------------------------------------------------------------------
# Loading a model to evaluate


def read_model_files(model_path: str | Path) -> tuple[str, str, dict]:
    """(kind, resolved config YAML, metadata) of an export folder (`"export"`) or a run's `.keras` (`"keras"`)."""
    model_path = Path(model_path)
    if model_path.is_dir() and is_saved_model(model_path):
        return ("export", *read_export_metadata(model_path))
    if model_path.suffix == ".keras" and model_path.is_file():
        run_dir = model_path.parent
        try:
            config_yaml = (run_dir / "config.yaml").read_text(encoding="utf-8")
            metadata = json.loads((run_dir / "metadata.json").read_text(encoding="utf-8"))
        except OSError:
            raise UserError(
                "--model",
                f"'{model_path}' is not in a keras_mtmm run folder (config.yaml, metadata.json beside it)",
                "pass a run folder's best.keras",
            ) from None
        return "keras", config_yaml, metadata
    raise UserError(
        "--model",
        f"'{model_path}' is neither an exported version folder (with saved_model.pb) nor a .keras file",
        "pass e.g. saved_models/demo/1 or runs/demo/best.keras",
    )


def load_predictor(model_path: str | Path, batch_size: int = 256):
    """Open an exported version folder or a `.keras` file for prediction on raw inputs.

    Returns:
        `(predict, config_yaml, metadata)`, where `predict(raw_batch) -> {task: array}`.
    """
    import tensorflow as tf

    kind, config_yaml, metadata = read_model_files(model_path)
    if kind == "export":
        serving = tf.saved_model.load(str(model_path)).signatures["serving_default"]
        signature = serving.structured_input_signature[1]

        def predict(batch):
            inputs = {name: tf.constant(values, dtype=signature[name].dtype) for name, values in batch.items()}
            outputs = serving(**inputs)
            return {task: outputs[task].numpy() for task in metadata["tasks"]}

        return predict, config_yaml, metadata

    preprocessor = Preprocessor.load(Path(model_path).parent / "preprocessor")
    model = load_checkpoint(model_path)
    network = getattr(model, "network", model)
    # Raw inputs -> outputs in one traced function, as the export serves them (no per-batch retracing).
    run = traced_once(lambda raw: network(preprocessor.transform(raw), training=False))

    def predict(batch):
        outputs = run({name: tf.constant(values) for name, values in batch.items()})
        return {task: np.asarray(outputs[task]) for task in metadata["tasks"]}

    return predict, config_yaml, metadata


def in_memory_predictor(model, preprocessor):
    """raw inputs -> every output of `model` (NumPy), through one traced function, as the export serves."""
    import tensorflow as tf

    run = traced_once(lambda raw: model(preprocessor.transform(raw), training=False))

    def predict(batch):
        outputs = run({name: tf.constant(values) for name, values in batch.items()})
        return {name: np.asarray(value) for name, value in outputs.items()}

    return predict


def evaluate_model(
    model_path: str | Path,
    config_path: str | Path | None = None,
    overrides: list[str] | None = None,
    split: str | None = "test",
    output: str | Path | None = None,
    batch_size: int = 256,
    baselines: str | Path | None = None,
    delta_m_form: str = "libmtl",
    quiet: bool = False,
    robustness: bool = False,
    data: str | Path | None = None,
) -> dict:
    """Evaluate a model on a split of its configured data, or on every row of a labelled file; print and
    optionally write the report.

    Args:
        model_path: an exported version folder or a `.keras` file in a run folder.
        config_path: the experiment config; default: the one stored with the model.
        overrides: `--set` overrides applied to that config (e.g. a different data path).
        split: `train`, `validation` or `test`.
        output: where to write the metrics JSON; the first rows' predictions,
            targets and label masks go beside it (`evaluation_dump_path`), for `mtmm report`.
        batch_size: examples per prediction call.
        baselines: a folder of single-task runs (`<folder>/<task>/best.keras`, or
            `<folder>/seed-<s>/<task>/` for several seeds, from `mtmm baselines`): adds a
            "transfer" section (Δm, negative transfer; mean ± std over seeds, with the
            other seeds of the multi-task run beside `model_path`, `train.py --seeds N`).
        delta_m_form: `libmtl` (higher is better) or `flat` (lower is better).
        quiet: do not print the table.
        robustness: add a "robustness" section: every task's metrics with all
            modalities, and with each modality removed in turn.
        data: a labelled CSV file to score every row of, instead of `split` (its image paths are
            relative to it); the report's "split" is the file's path. With `baselines`, every
            model (each seed's, both sides) is scored on the file's rows.
    """
    import yaml

    if data is not None and split is not None and split != "test":
        raise UserError("--data", "scores a file, --split a split of the configured data", "pass one of them")
    split = split or "test"
    if split not in SPLIT_NAMES:
        raise UserError("--split", f"unknown split '{split}'", f"choose one of: {', '.join(SPLIT_NAMES)}")
    kind, config_yaml, _ = read_model_files(model_path)
    if config_path is not None:
        config = load_config(config_path, overrides)
    else:
        # An export carries its hub modules: the handles it was trained from need not exist here.
        config = config_from_dict(yaml.safe_load(config_yaml), overrides, check_files=kind != "export")
    if data is not None:
        table, split = load_file(data, config), str(data)
    else:
        table = load_splits(config)[split]
    dump = evaluation_dump_path(output) if output is not None else None
    report = score_model(model_path, table, split, batch_size, dump=dump)
    if not quiet:
        print(format_table(report))
    if baselines is not None:
        report["transfer"] = compare_with_baselines(
            report, baselines, table, split, batch_size, delta_m_form, model_path, config, same_rows=data is not None
        )
        if not quiet:
            print(format_comparison(report["transfer"]))
    if robustness:
        report["robustness"] = robustness_table(model_path, table, batch_size)
        if not quiet:
            print(format_robustness(report["robustness"], report["tasks"]))
    if output is not None:
        write_report(report, output)
        print(f"metrics written to {output}")
    return report


def robustness_table(model_path: str | Path, table, batch_size: int = 256) -> dict:
    """Every task's metrics with all modalities, and with each modality removed in turn.

    "Removed" means what serving sees when a client leaves the modality out:
    an empty image or text string, an all-NaN numeric row, empty category
    strings, for every row. Returns `{"all": {task: {metric: value}},
    "without_<modality>": {...}, ...}` (each task's loss, metrics and
    labelled count, as in the report's "tasks").
    """
    predict, _, metadata = load_predictor(model_path, batch_size)
    return robustness_scores(predict, metadata, table, batch_size)


def robustness_scores(predict, metadata: dict, table, batch_size: int = 256) -> dict:
    """`robustness_table` of a predictor (raw inputs -> outputs), e.g. an in-memory model's."""

    def scores(transform=None):
        with data_errors():
            report = score_batches(predict, iter_tables(table, batch_size), metadata, "", "", transform)
        return report["tasks"]

    result = {"all": scores()}
    for modality, spec in metadata["inputs"].items():

        def remove(inputs, modality=modality, kind=spec["type"]):
            return {**inputs, modality: missing_values(kind, inputs[modality])}

        result[f"without_{modality}"] = scores(remove)
    return result


def missing_values(modality_type: str, values: np.ndarray) -> np.ndarray:
    """An array shaped like `values` that marks the modality missing in every row."""
    if modality_type == "numeric":
        return np.full(values.shape, np.nan, dtype=np.float32)
    return np.full(values.shape, "", dtype=object)


def format_robustness(robustness: dict, tasks: dict) -> str:
    """A condition × task table of each task's first metric (its main one)."""
    main = {task: next(name for name in result if name not in ("loss", "labelled")) for task, result in tasks.items()}
    header = "".join(f"{f'{task} {metric}':>22}" for task, metric in main.items())
    lines = ["missing-modality robustness (each modality removed in turn)", f"  {'condition':<22}{header}"]
    for condition, results in robustness.items():
        cells = "".join(f"{_format(results[task][metric]):>22}" for task, metric in main.items())
        lines.append(f"  {condition:<22}{cells}")
    return "\n".join(lines)


def score_model(
    model_path: str | Path, table, split: str, batch_size: int = 256, dump: str | Path | None = None
) -> dict:
    """The metrics report of a saved model (export or `.keras`) on a column table or a streaming split.

    With `dump`, also write the evaluation dump there (see `score_batches`).
    """
    if num_rows(table) == 0:
        raise DataError(
            f"data ({split} split)",
            "the split is empty",
            "evaluate another split, change data.*_fraction, or score a file with --data FILE",
        )

    predict, _, metadata = load_predictor(model_path, batch_size)
    with data_errors():
        return score_batches(predict, iter_tables(table, batch_size), metadata, str(model_path), split, dump=dump)


def score_batches(
    predict, tables, metadata: dict, model_name: str, split: str, transform=None, dump: str | Path | None = None
) -> dict:
    """The metrics report of `predict` (raw inputs -> outputs) over column tables read batch by batch.

    Only the predictions, targets and masks are kept, so a streamed split of
    any size is scored in bounded memory (its outputs aside). `transform`
    may change each batch's raw inputs (e.g. remove a modality). With `dump`,
    the first rows' predictions, targets and masks are also written there
    (`write_evaluation_dump`), for the run report's plots.
    """
    predictions: dict[str, list] = {}
    targets: dict[str, list] = {}
    masks: dict[str, list] = {}
    rows, origins = 0, []
    for table in tables:
        origins.append(row_ids_of(table))  # where each row came from, for the dump
        inputs = raw_inputs(table, metadata)
        if transform is not None:
            inputs = transform(inputs)
        outputs = predict(inputs)
        batch_targets, batch_masks = encode_targets(table, metadata)
        for task in metadata["tasks"]:
            predictions.setdefault(task, []).append(np.asarray(outputs[task]))
            targets.setdefault(task, []).append(batch_targets[task])
            masks.setdefault(task, []).append(batch_masks[task])
        rows += len(next(iter(inputs.values())))
    joined = [{task: np.concatenate(parts) for task, parts in d.items()} for d in (predictions, targets, masks)]
    if dump is not None:
        row_ids, row_files = join_row_ids(origins)
        write_evaluation_dump(dump, *joined, split, row_ids=row_ids, row_files=row_files)
    return metrics_report(model_name, split, rows, score_tasks(*joined, metadata))


def raw_inputs(table: dict[str, np.ndarray], metadata: dict) -> dict[str, np.ndarray]:
    """The model's raw serving inputs from a column table, as its metadata describes them."""
    from types import SimpleNamespace

    modalities = {name: SimpleNamespace(**spec) for name, spec in metadata["inputs"].items()}
    return modality_inputs(table, modalities)


def compare_with_baselines(
    report, folder, table, split, batch_size, form, model_path=None, config=None, same_rows=False
) -> dict:
    """Δm against single-task baselines, over seeds: see `transfer_seeds.compare_with_baselines`."""
    return compare_runs(report, folder, table, split, batch_size, form, model_path, config, same_rows)
