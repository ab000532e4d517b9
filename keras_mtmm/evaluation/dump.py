"""The evaluation dump: the first rows' predictions, targets and label masks per task, beside a metrics JSON.

Training writes one beside a run's `metrics.json` (as `evaluation.npz`), `evaluate.py --output x.json`
beside `x.json` (as `x.npz`); the run report draws its confusion matrices, ROC curves and scatter
plots from it instead of running the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_mtmm.run_folder import RunFolder

# The evaluation dump beside a metrics JSON keeps at most this many rows.
EVALUATION_DUMP_ROWS = 5000


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
    name = RunFolder.EVALUATION if metrics_path.name == RunFolder.METRICS else metrics_path.stem + ".npz"
    return metrics_path.with_name(name)
