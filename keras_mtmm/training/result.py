"""What a training run returns (`TrainResult`), and how it seeds itself."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_mtmm.preprocessing.preprocessor import Preprocessor


@dataclass
class TrainResult:
    """What `train` produced: `model` is the network that is exported; `training_model` wraps it for fit."""

    run_dir: Path
    model: keras.Model
    preprocessor: Preprocessor
    task_weights: dict[str, float]
    history: dict[str, list[float]]
    metrics: dict | None
    export_path: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    training_model: keras.Model | None = None
    chief: bool = True  # whether this process wrote the run folder (multi-worker: only the chief does)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and TF; with `deterministic`, make TF ops deterministic too."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def reproducibility(config, strategy, versions: dict) -> dict:
    """What the run's metadata records to reproduce it: seeds, determinism, replicas, library versions."""
    training = config.training
    return {
        "seed": config.seed,
        "deterministic": training.deterministic,
        "distribute": training.distribute,
        "replicas": strategy.num_replicas_in_sync,
        "python": platform.python_version(),
        "numpy": np.__version__,
        **versions,
    }
