"""Robustness: every task's metrics with all modalities, and with each modality removed in turn
(what serving sees when a client leaves a modality out)."""

from __future__ import annotations

from pathlib import Path

from keras_mtmm.data.pipeline import data_errors
from keras_mtmm.data.tables import iter_tables
from keras_mtmm.evaluation.predictor import load_predictor
from keras_mtmm.evaluation.scoring import format_value, score_batches
from keras_mtmm.preprocessing.modalities import get_modality_type


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
            return {**inputs, modality: get_modality_type(kind).missing(inputs[modality])}

        result[f"without_{modality}"] = scores(remove)
    return result


def format_robustness(robustness: dict, tasks: dict) -> str:
    """A condition × task table of each task's first metric (its main one)."""
    main = {task: next(name for name in result if name not in ("loss", "labelled")) for task, result in tasks.items()}
    header = "".join(f"{f'{task} {metric}':>22}" for task, metric in main.items())
    lines = ["missing-modality robustness (each modality removed in turn)", f"  {'condition':<22}{header}"]
    for condition, results in robustness.items():
        cells = "".join(f"{format_value(results[task][metric]):>22}" for task, metric in main.items())
        lines.append(f"  {condition:<22}{cells}")
    return "\n".join(lines)
