"""The small files a training run adds to its folder for the run report (`mtmm report`).

Training writes them; the report only reads them, so no plotting happens on
the training path:

    inspection.json    mean gate weights (MMoE/PLE), modality weights per task,
                       cross-stitch and fusion weights, on the validation split
    data_sizes.json    examples per split; labelled examples per task and split
    timings.json       load/prepare/fit/export/total seconds (load_s: reading and checking
                       every split; prepare_s includes it), training examples per second

(the test split's evaluation dump is `keras_mtmm.evaluation.dump`).
"""

from __future__ import annotations

from pathlib import Path

from keras_mtmm.data.tables import as_table, iter_tables, num_rows
from keras_mtmm.evaluation.inspection import fusion_summary, gate_summary, mixing_summary
from keras_mtmm.evaluation.scoring import encode_targets
from keras_mtmm.files import write_json
from keras_mtmm.run_folder import RunFolder
from keras_mtmm.tasks.base import labelled_rows

# The modality and gate weights in inspection.json are averaged over at most this many validation rows.
INSPECTION_ROWS = 5000


def write_summaries(
    run: RunFolder, network, preprocessor, splits: dict, metadata: dict, train_labelled, health=None
) -> None:
    """Write `inspection.json` (on the validation split; with `health`, see `keras_mtmm.training.health`) and
    `data_sizes.json` into a run folder.

    Neither may fail a finished training run: a problem is one warning line,
    and the report then skips what is missing.
    """
    write_inspection(run / RunFolder.INSPECTION, network, preprocessor, splits["validation"], health=health)
    try:
        write_data_sizes(run / RunFolder.DATA_SIZES, splits, metadata, train_labelled)
    except Exception as error:  # see above
        print(f"warning: {RunFolder.DATA_SIZES} not written ({type(error).__name__}: {error}); the report skips it")


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
        write_json(path, summary)
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
    labelled = {"train": dict(train_labelled)}
    for split in ("validation", "test"):
        counts = dict.fromkeys(metadata["tasks"], 0)
        for table in iter_tables(splits[split], 4096):
            _, masks = encode_targets(table, metadata)
            for task, mask in masks.items():
                counts[task] += labelled_rows(mask)
        labelled[split] = counts
    examples = {split: num_rows(splits[split]) for split in ("train", "validation", "test")}
    sizes = {"examples": examples, "labelled": labelled}
    return write_json(path, sizes)


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
    return write_json(path, data)
