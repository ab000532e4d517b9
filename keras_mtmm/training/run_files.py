"""The small files a training run adds to its folder for the run report (`mtmm report`).

Training writes them; the report only reads them, so no plotting happens on
the training path:

    inspection.json    mean gate weights (MMoE/PLE), modality weights per task,
                       cross-stitch and fusion weights, on the validation split
    data_sizes.json    examples per split; labelled examples per task and split
    timings.json       load/prepare/fit/export/total seconds (load_s: reading and checking
                       every split; prepare_s includes it), training examples per second

and, where the test split is scored (by training, or `evaluate.py --output`):

    evaluation.npz     the first rows' predictions, targets and label masks per task

This module imports neither TensorFlow nor Keras at load time, so the
report reads these files quickly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# The evaluation dump beside a metrics JSON keeps at most this many rows.
EVALUATION_DUMP_ROWS = 5000
# The modality and gate weights in inspection.json are averaged over at most this many validation rows.
INSPECTION_ROWS = 5000


def write_json(data: dict, path: str | Path) -> Path:
    """Write `data` as indented JSON, replacing `path` only once the file is complete."""
    path = Path(path)
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(json.dumps(data, indent=1), encoding="utf-8")
    staging.replace(path)
    return path


def write_summaries(
    run_dir: str | Path, network, preprocessor, splits: dict, metadata: dict, train_labelled, health=None
) -> None:
    """Write `inspection.json` (on the validation split; with `health`, see `keras_mtmm.training.health`) and
    `data_sizes.json` into a run folder.

    Neither may fail a finished training run: a problem is one warning line,
    and the report then skips what is missing.
    """
    run_dir = Path(run_dir)
    write_inspection(run_dir / "inspection.json", network, preprocessor, splits["validation"], health=health)
    try:
        write_data_sizes(run_dir / "data_sizes.json", splits, metadata, train_labelled)
    except Exception as error:  # see above
        print(f"warning: data_sizes.json not written ({type(error).__name__}: {error}); the report skips it")


def write_inspection(
    path: str | Path, network, preprocessor, table, split: str = "validation", health: dict | None = None
) -> bool:
    """Write what `mtmm inspect` prints (gates, modality weights, mixing) for the first rows of `table`.

    Returns False, after printing a one-line warning, when the summary cannot
    be computed: the run is not failed for it (the report then says the
    section was skipped).

    Args:
        path: the JSON file to write (`<run>/inspection.json`).
        network: the trained functional network (dict in, dict out).
        preprocessor: its adapted Preprocessor.
        table: the split (a column table or a streaming split).
        split: the split's name, recorded in the file.
    """
    from keras_mtmm.data.tables import as_table, num_rows
    from keras_mtmm.evaluation.inspection import fusion_summary, gate_summary, mixing_summary

    try:
        rows = as_table(table, INSPECTION_ROWS)
        if num_rows(rows) == 0:
            print(f"note: {Path(path).name} not written: the {split} split is empty")
            return False
        summary = {
            "split": split,
            "rows": num_rows(rows),
            "gates": gate_summary(network, preprocessor, rows),
            "modality_weights": fusion_summary(network, preprocessor, rows),
            **mixing_summary(network),
        }
        if health is not None:
            summary["health"] = health
        write_json(summary, path)
        return True
    except Exception as error:  # an optional summary must never fail a finished training run
        print(f"warning: {Path(path).name} not written ({type(error).__name__}: {error}); the report skips it")
        return False


def write_data_sizes(path: str | Path, splits: dict, metadata: dict, train_labelled: dict[str, int]) -> Path:
    """Write the examples per split and the labelled examples per task and split.

    Args:
        path: the JSON file to write (`<run>/data_sizes.json`).
        splits: `{split: table or streaming split}` as training loaded them.
        metadata: the model metadata (tasks and their labels).
        train_labelled: labelled training examples per task, as training counted them.
    """
    from keras_mtmm.data.tables import iter_tables, num_rows
    from keras_mtmm.evaluation.scoring import encode_targets

    labelled = {"train": dict(train_labelled)}
    for split in ("validation", "test"):
        counts = dict.fromkeys(metadata["tasks"], 0)
        for table in iter_tables(splits[split], 4096):
            _, masks = encode_targets(table, metadata)
            for task, mask in masks.items():
                counts[task] += int(mask.sum())
        labelled[split] = counts
    examples = {split: num_rows(splits[split]) for split in ("train", "validation", "test")}
    sizes = {"examples": examples, "labelled": labelled}
    return write_json(sizes, path)


def write_timings(path: str | Path, timings: dict[str, float], history: dict, first_epoch: int, train_rows: int):
    """Write the run's timings and its training throughput.

    `examples_per_s` is the training rows times the epochs this process ran
    (from `first_epoch` on: a resumed run counts only its own), divided by
    `fit_s` (which includes validation).
    """
    epochs = [epoch for epoch in history.get("epoch", []) if epoch >= first_epoch]
    data = {key: float(value) for key, value in timings.items()}
    data["epochs_run"] = len(epochs)
    data["train_rows"] = int(train_rows)
    fit_s = timings.get("fit_s")
    data["examples_per_s"] = train_rows * len(epochs) / fit_s if fit_s and epochs else None
    return write_json(data, path)


def write_evaluation_dump(
    path: str | Path,
    predictions: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    masks: dict[str, np.ndarray],
    split: str,
    max_rows: int = EVALUATION_DUMP_ROWS,
    row_ids: np.ndarray | None = None,
    row_files: np.ndarray | None = None,
) -> Path:
    """Write the first `max_rows` rows' predictions, targets and label masks per task as a `.npz` file.

    The run report draws its confusion matrices, ROC curves and scatter plots
    from this file instead of running the model. Arrays are named
    `<task>__predictions`, `<task>__targets` and `<task>__mask`; `split`
    holds the split's name. Read it back with `read_evaluation_dump`.

    Where the rows' places in their source are known, `row_ids` holds each
    row's id as the split manifest writes it (`keras_mtmm.data.manifest`: a
    1-based CSV line, or a 0-based row index) and `row_files` its CSV file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"split": np.asarray(split)}
    for task in predictions:
        arrays[f"{task}__predictions"] = np.asarray(predictions[task], dtype=np.float32)[:max_rows]
        arrays[f"{task}__targets"] = np.asarray(targets[task], dtype=np.float32)[:max_rows]
        arrays[f"{task}__mask"] = np.asarray(masks[task], dtype=np.float32)[:max_rows]
    if row_ids is not None:
        arrays["row_ids"] = np.asarray(row_ids, dtype=np.int64)[:max_rows]
    if row_files is not None:
        arrays["row_files"] = np.asarray(row_files, dtype=str)[:max_rows]
    staging = path.with_name(path.name + ".tmp.npz")  # np.savez appends .npz to other names
    np.savez_compressed(staging, **arrays)
    staging.replace(path)
    return path


def read_evaluation_dump(path: str | Path) -> tuple[str, dict[str, dict[str, np.ndarray]]]:
    """`(split, {task: {"predictions", "targets", "mask"}})` from a file `write_evaluation_dump` wrote."""
    with np.load(Path(path), allow_pickle=False) as data:
        tasks: dict[str, dict[str, np.ndarray]] = {}
        for key in data.files:
            if "__" in key:
                task, kind = key.rsplit("__", 1)
                tasks.setdefault(task, {})[kind] = data[key]
        return str(data["split"]), tasks


def evaluation_dump_path(metrics_path: str | Path) -> Path:
    """Where the evaluation dump of a metrics JSON goes: `metrics.json` -> `evaluation.npz`, `x.json` -> `x.npz`.

    A run folder's `metrics.json` and `evaluation.npz` are what the run report reads.
    """
    metrics_path = Path(metrics_path)
    name = "evaluation.npz" if metrics_path.name == "metrics.json" else metrics_path.stem + ".npz"
    return metrics_path.with_name(name)
