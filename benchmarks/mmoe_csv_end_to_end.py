"""What a user waits for: MMoE trained from a CSV through `python train.py` vs DeepCTR's MMOE from the same CSV.

The MMoE synthetic data (see mmoe_synthetic.py, p = 0.5) is written to a
CSV. keras_mtmm trains it with the plain command line (`train.py --config`,
CSV source, identity encoder, MMoE 8×16 experts, towers [8], batch 256);
DeepCTR's MMOE (same sizes) reads the same CSV with NumPy and fits. Both
run the same epochs in the same run. Reported: seconds per epoch after the
first (keras_mtmm's from history.json's `epoch_time_s`, validation
included; DeepCTR's from a callback, no validation), the whole command's
wall time, and the ratios.

    python benchmarks/mmoe_csv_end_to_end.py [--rows 20000] [--epochs 10]

Writes benchmarks/results/mmoe_csv_end_to_end.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from machine import machine_info, write_json  # noqa: E402
from mmoe_synthetic import EpochTimer, synthetic_data  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "mmoe_csv_end_to_end.json"


def write_csv(path: Path, x: np.ndarray, y1: np.ndarray, y2: np.ndarray) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"x{i}" for i in range(x.shape[1])] + ["y1", "y2"])
        for row in range(len(x)):
            writer.writerow([f"{v:.6f}" for v in x[row]] + [f"{y1[row]:.6f}", f"{y2[row]:.6f}"])


def keras_mtmm_cli(folder: Path, csv_path: Path, dimension: int, epochs: int) -> dict:
    config = {
        "name": "synthetic_csv",
        "data": {"source": "csv", "path": str(csv_path), "validation_fraction": 0.1, "test_fraction": 0.1},
        "modalities": {
            "features": {
                "type": "numeric",
                "columns": [f"x{i}" for i in range(dimension)],
                "encoder": {"type": "identity"},
            }
        },
        "sharing": {"type": "mmoe", "num_experts": 8, "expert_units": [16], "tower_units": [8], "dropout": 0.0},
        "tasks": {"y1": {"type": "regression", "label": "y1"}, "y2": {"type": "regression", "label": "y2"}},
        "training": {
            "epochs": epochs,
            "batch_size": 256,
            "learning_rate": 0.001,
            "early_stopping_patience": epochs,
            "jit_compile": True,
            "steps_per_execution": 32,
            "cache": True,
            "deterministic": False,
        },
    }
    config_path = folder / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "train.py",
            "--config",
            str(config_path),
            "--output-dir",
            str(folder / "run"),
            "--no-export",
            "--quiet",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - started
    history = json.loads((folder / "run" / "history.json").read_text())
    return {
        "wall_s": wall,
        "epoch_s": statistics.median(history["epoch_time_s"][1:]),
        "val_loss": history["val_loss"][-1],
    }


def deepctr_from_csv(csv_path: Path, dimension: int, epochs: int) -> dict:
    started = time.perf_counter()
    import keras
    from deepctr.feature_column import DenseFeat
    from deepctr.models import MMOE

    data = np.loadtxt(csv_path, delimiter=",", skiprows=1, dtype=np.float32)
    order = np.random.default_rng(0).permutation(len(data))
    train = data[order[len(data) // 5 :]]  # the same 80% share keras_mtmm trains on
    features = {f"x{i}": train[:, i] for i in range(dimension)}
    model = MMOE(
        [DenseFeat(f"x{i}", 1) for i in range(dimension)],
        num_experts=8,
        expert_dnn_hidden_units=(16,),
        tower_dnn_hidden_units=(8,),
        gate_dnn_hidden_units=(),
        task_types=("regression", "regression"),
        task_names=("y1", "y2"),
    )
    model.compile(keras.optimizers.Adam(0.001), loss=["mse", "mse"])
    timer = EpochTimer()
    model.fit(
        features,
        [train[:, dimension], train[:, dimension + 1]],
        batch_size=256,
        epochs=epochs,
        callbacks=[timer],
        verbose=0,
    )
    return {"wall_s": time.perf_counter() - started, "epoch_s": statistics.median(timer.durations[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    x, y1, y2 = synthetic_data(args.rows, 0.5)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        csv_path = folder / "synthetic.csv"
        write_csv(csv_path, x, y1, y2)
        ours = keras_mtmm_cli(folder, csv_path, x.shape[1], args.epochs)
        theirs = deepctr_from_csv(csv_path, x.shape[1], args.epochs)
    ratios = {
        "epoch_speedup": theirs["epoch_s"] / ours["epoch_s"],
        "wall_speedup": theirs["wall_s"] / ours["wall_s"],
    }
    print(
        f"keras_mtmm train.py : {ours['epoch_s']:.3f} s/epoch (with validation), {ours['wall_s']:.1f} s whole command"
    )
    print(f"DeepCTR MMOE       : {theirs['epoch_s']:.3f} s/epoch, {theirs['wall_s']:.1f} s including CSV load")
    print(
        f"speed-up keras_mtmm over DeepCTR: per epoch {ratios['epoch_speedup']:.2f}x, "
        f"whole run {ratios['wall_speedup']:.2f}x"
    )
    write_json(
        RESULTS,
        {
            "benchmark": "mmoe_csv_end_to_end",
            "machine": machine_info(),
            "parameters": vars(args),
            "keras_mtmm": ours,
            "deepctr": theirs,
            "ratios": ratios,
        },
    )


if __name__ == "__main__":
    main()
