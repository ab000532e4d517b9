"""`evaluate.py` / `keras_mtmm.evaluate`: score a model on a split or a labelled file, optionally against
single-task baselines (Δm) and with each modality removed (robustness); print and write the metrics JSON."""

from __future__ import annotations

from pathlib import Path

import yaml

from keras_mtmm.config.loading import config_from_dict, load_config
from keras_mtmm.data.tables import load_file, load_splits
from keras_mtmm.errors import UserError
from keras_mtmm.evaluation.baselines import compare_with_baselines
from keras_mtmm.evaluation.dump import evaluation_dump_path
from keras_mtmm.evaluation.predictor import read_model_files
from keras_mtmm.evaluation.robustness import format_robustness, robustness_table
from keras_mtmm.evaluation.scoring import (
    SPLIT_NAMES,
    format_table,
    score_model,
    write_report,
)
from keras_mtmm.evaluation.transfer import format_comparison


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
