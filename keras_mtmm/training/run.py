"""`train`: one experiment config -> a run folder, a scored model and a TF Serving export (`Trainer`'s phases).

The run folder's files are listed in `keras_mtmm.run_folder`; the phases in `keras_mtmm.training.trainer`.
"""

from __future__ import annotations

from pathlib import Path

from keras_mtmm.training.result import TrainResult
from keras_mtmm.training.trainer import Trainer


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
    trainer = Trainer(config, output_dir, export_dir, export, verbose, data, labels, keep, overwrite)
    return trainer.run()
