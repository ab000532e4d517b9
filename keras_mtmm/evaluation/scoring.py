"""Evaluation: per-task losses and metrics, the total weighted loss, reports.

The scores are computed in NumPy from the model's outputs, so an exported
version (run through its serving signature, exactly as TF Serving runs it)
and an in-memory or `.keras` model are scored by the same code. For each task
only its labelled examples count; the task loss is the mean over them,
computed as Keras computes it, and the total is `L = Σ_i w_i L_i` with the
weights the model was trained with.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from keras_mtmm.cells import as_strings
from keras_mtmm.data.manifest import join_row_ids, row_ids_of
from keras_mtmm.data.pipeline import data_errors
from keras_mtmm.data.tables import iter_tables, modality_inputs, num_rows
from keras_mtmm.errors import DataError
from keras_mtmm.evaluation.dump import write_evaluation_dump
from keras_mtmm.evaluation.predictor import load_predictor
from keras_mtmm.files import write_json
from keras_mtmm.preprocessing.labels import encode_table_labels
from keras_mtmm.tasks import get_task_type
from keras_mtmm.tasks.scores import group_auc, ndcg_at

SPLIT_NAMES = ("train", "validation", "test")


def score_tasks(
    predictions: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    masks: dict[str, np.ndarray],
    metadata: dict,
    groups: dict[str, np.ndarray] | None = None,
) -> dict:
    """Per-task loss and metrics on labelled rows, and the total weighted loss.

    Args:
        predictions: model outputs per task.
        targets: encoded targets per task (as `TaskType.encode` makes them).
        masks: 1 where the task's label is present, 0 where it is missing.
        metadata: the model metadata (`export.model_metadata`): task types,
            metrics, target scales, task weights.
        groups: per task with a `group` column, its values per row: `gauc` and
            `ndcg@k` are added (`keras_mtmm.tasks.scores`).

    Returns:
        `{"loss": Σ w_i L_i, "weights": {...}, "tasks": {task: {"loss", <metric>..., "labelled"}}}`.
    """
    tasks = {}
    total = 0.0
    for task, spec in metadata["tasks"].items():
        task_type = get_task_type(spec["type"], spec=spec)
        metric_names = spec.get("metrics") or list(task_type.default_metrics)
        count, result = task_type.labelled_scores(predictions[task], targets[task], masks[task], metric_names, spec)
        if count and groups and task in groups:
            labelled = masks[task] > 0
            prediction, target = np.asarray(predictions[task])[labelled], np.asarray(targets[task])[labelled]
            group, k = np.asarray(groups[task])[labelled], int(spec.get("ndcg_k", 10))
            result["gauc"] = group_auc(target[:, 0], prediction[:, 0], group)
            result[f"ndcg@{k}"] = ndcg_at(target[:, 0], prediction[:, 0], group, k)
        result["labelled"] = count
        tasks[task] = result
        total += metadata["task_weights"][task] * result["loss"]
    return {"loss": float(total), "weights": dict(metadata["task_weights"]), "tasks": tasks}


def encode_targets(table: dict[str, np.ndarray], metadata: dict) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Encode a table's raw labels with the classes the model was trained with."""
    tasks = metadata["tasks"]
    classes = {task: spec["classes"] for task, spec in tasks.items()}
    return encode_table_labels(table, tasks, classes, metadata.get("label_separator", "|"))


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
            f"{name}={format_value(value)}" for name, value in result.items() if name not in ("loss", "labelled")
        )
        weight = report["weights"][task]
        loss = format_value(result["loss"])
        lines.append(f"  {task:<14}{result['labelled']:>9}  {weight:>7.3g}  {loss:>9}  {metrics}")
    lines.append(f"  total weighted loss Σ w_i L_i = {format_value(report['loss'])}")
    return "\n".join(lines)


def format_value(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}"


def write_report(report: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, report)


# ---------------------------------------------------------------------------
# Loading a model to evaluate


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
    groups: dict[str, list] = {}  # a task's group column, where the model has one and the data holds it
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
            column = metadata["tasks"][task].get("group")
            if column is not None and column in table:
                groups.setdefault(task, []).append(as_strings(table[column]))
        rows += len(next(iter(inputs.values())))
    joined = [{task: np.concatenate(parts) for task, parts in d.items()} for d in (predictions, targets, masks)]
    if dump is not None:
        row_ids, row_files = join_row_ids(origins)
        write_evaluation_dump(dump, *joined, split, row_ids=row_ids, row_files=row_files)
    grouped = {task: np.concatenate(parts) for task, parts in groups.items() if len(parts) == len(origins)}
    return metrics_report(model_name, split, rows, score_tasks(*joined, metadata, grouped))


def raw_inputs(table: dict[str, np.ndarray], metadata: dict) -> dict[str, np.ndarray]:
    """The model's raw serving inputs from a column table, as its metadata describes them."""
    from types import SimpleNamespace

    modalities = {name: SimpleNamespace(**spec) for name, spec in metadata["inputs"].items()}
    return modality_inputs(table, modalities)
