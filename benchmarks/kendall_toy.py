"""Kendall et al.'s toy check for uncertainty weighting: two regressions with noise σ = 10 and σ = 1.

Kendall, Gal, Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses
for Scene Geometry and Semantics", CVPR 2018; the authors' Keras example
trains two regression tasks on the same inputs with true noise σ1 = 10 and
σ2 = 1 and checks that the learned σ1 > σ2 (REFERENCES.md §1).

Data (per seed): x ~ N(0, I_10) in columns x0..x9; w1, w2 independent random
unit vectors; `y_t = scale · w_tᵀx + N(0, σ_t²)` with the same `scale` (3, as
in the authors' example, whose clean slopes are 2 and 3) and σ1 = 10, σ2 = 1.
The table is written to a CSV in a temporary folder and trained through
`keras_mtmm.training.run.train` (`data.source: csv`, the CLI's path) with
`weighting.strategy: uncertainty`: one numeric modality (`identity`
encoder), hard sharing, no dropout.

keras_mtmm's regression loss is the MSE in units of each task's training-
target std (`ScaledMeanSquaredError`), so the learned σ_t = exp(s_t/2) is in
those units too. Its optimum is the scaled RMSE, so σ_t · std_t (std_t from
`preprocessor.target_statistics`) is in label units and should approach
the true noise (10 and 1) when the model fits the clean function; the test
RMSE in label units is printed beside it.

    python benchmarks/kendall_toy.py            # 3 seeds, 20,000 rows, 30 epochs (~3 min on 2 cores)
    python benchmarks/kendall_toy.py --quick    # 1 seed, a few epochs (not converged)

Writes benchmarks/results/kendall_toy.json (per-seed figures, σ per epoch,
parameters, machine). The check σ1 > σ2 is reported, not asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from machine import describe, machine_info, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "kendall_toy.json"
NUM_FEATURES = 10
TRUE_NOISE = {"y1": 10.0, "y2": 1.0}


def make_table(num_rows: int, scale: float, seed: int) -> dict[str, np.ndarray]:
    """Columns x0..x9, y1, y2: two linear tasks of one input, noise σ = 10 and 1."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num_rows, NUM_FEATURES))
    table = {f"x{i}": x[:, i] for i in range(NUM_FEATURES)}
    for task, noise in TRUE_NOISE.items():
        direction = rng.standard_normal(NUM_FEATURES)
        direction /= np.linalg.norm(direction)
        table[task] = scale * x @ direction + noise * rng.standard_normal(num_rows)
    return table


def write_csv(table: dict[str, np.ndarray], path: Path) -> Path:
    columns = list(table)
    values = np.stack([table[c] for c in columns], axis=1)
    np.savetxt(path, values, delimiter=",", header=",".join(columns), comments="", fmt="%.8g")
    return path


def experiment_dict(csv_path: Path, seed: int, args) -> dict:
    features = [f"x{i}" for i in range(NUM_FEATURES)]
    return {
        "name": f"kendall_toy_seed{seed}",
        "seed": seed,
        "data": {"source": "csv", "path": str(csv_path), "validation_fraction": 0.1, "test_fraction": 0.1},
        "modalities": {"features": {"type": "numeric", "columns": features, "encoder": {"type": "identity"}}},
        "fusion": {"strategy": "early"},
        "sharing": {"type": "hard", "shared_units": [64, 32], "tower_units": [16], "dropout": 0.0},
        "tasks": {
            task: {"type": "regression", "label": task, "weight": 1.0, "metrics": ["mae", "rmse"]}
            for task in TRUE_NOISE
        },
        "weighting": {"strategy": "uncertainty"},
        "training": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "early_stopping_patience": args.epochs,  # σ keeps moving while the loss falls: no early stop
        },
    }


def run_seed(seed: int, args, workdir: Path) -> dict:
    """Generate, write, train one seed; returns its figures."""
    from keras_mtmm.config.loading import config_from_dict
    from keras_mtmm.training.run import train

    table = make_table(args.num_examples, args.scale, seed)
    csv_path = write_csv(table, workdir / f"toy_seed{seed}.csv")
    config = config_from_dict(experiment_dict(csv_path, seed, args))
    log = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(log):
        result = train(config, output_dir=workdir / f"run_seed{seed}", export=False, verbose=0)
    seconds = time.perf_counter() - started

    # train() restores the best checkpoint (lowest val_loss) after fit: the model's σ are that epoch's.
    sigmas = result.training_model.weighting.sigmas()
    history = result.history
    best_epoch = int(np.argmin(history["val_loss"]))
    tasks = {}
    for task, noise in TRUE_NOISE.items():
        _, target_std = result.preprocessor.target_statistics(task)
        learned, last = sigmas[task], history[f"sigma_{task}"][-1]
        tasks[task] = {
            "true_noise": noise,
            "target_std": target_std,
            "sigma_learned": learned,
            "sigma_label_units": learned * target_std,
            "sigma_expected_scaled": noise / target_std,  # the optimum if the clean function is fitted exactly
            "sigma_last_epoch": last,
            "sigma_last_epoch_label_units": last * target_std,
            "weight": 0.5 / learned**2,  # uncertainty weighting's regression weight ½·exp(−s)
            "test_rmse": result.metrics["tasks"][task]["rmse"],
            "test_mae": result.metrics["tasks"][task]["mae"],
            "sigma_per_epoch": history[f"sigma_{task}"],
            "train_loss_per_epoch": history[f"{task}_loss"],
        }
    return {
        "seed": seed,
        "epochs_run": len(history["epoch"]),
        "best_epoch": best_epoch,
        "val_loss_per_epoch": history["val_loss"],
        "seconds": seconds,
        "tasks": tasks,
        "sigma1_gt_sigma2": tasks["y1"]["sigma_learned"] > tasks["y2"]["sigma_learned"],
        "sigma_ratio_learned": tasks["y1"]["sigma_learned"] / tasks["y2"]["sigma_learned"],
        "sigma_ratio_label_units": tasks["y1"]["sigma_label_units"] / tasks["y2"]["sigma_label_units"],
    }


def format_table(runs: list[dict]) -> str:
    header = (
        f"{'seed':>4} {'best':>4} {'task':>4} {'true σ':>7} {'target std':>10} {'σ learned':>10} {'σ expected':>10} "
        f"{'σ label':>8} {'σ label last':>12} {'test RMSE':>9} {'weight':>7}"
    )
    lines = [header, "-" * len(header)]
    for run in runs:
        for task, figure in run["tasks"].items():
            lines.append(
                f"{run['seed']:>4} {run['best_epoch']:>4} {task:>4} {figure['true_noise']:>7.1f} "
                f"{figure['target_std']:>10.3f} {figure['sigma_learned']:>10.3f} "
                f"{figure['sigma_expected_scaled']:>10.3f} {figure['sigma_label_units']:>8.3f} "
                f"{figure['sigma_last_epoch_label_units']:>12.3f} {figure['test_rmse']:>9.3f} {figure['weight']:>7.3f}"
            )
    lines.append("")
    lines.append(
        "σ learned: exp(s/2) of the restored best checkpoint (epoch `best`), in target-std units; "
        "σ expected = true σ / target std; σ label = σ learned · target std; σ label last: the last epoch's"
    )
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 seed, 2,000 rows, 3 epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2")
    parser.add_argument("--num-examples", type=int, default=None, help="rows (80%% train); default 20000")
    parser.add_argument("--epochs", type=int, default=None, help="default 30")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.002, help="the demo's; also moves log σ²")
    parser.add_argument("--scale", type=float, default=3.0, help="the clean function's scale, both tasks")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = [0] if args.quick else [0, 1, 2]
    if args.num_examples is None:
        args.num_examples = 2000 if args.quick else 20000
    if args.epochs is None:
        args.epochs = 3 if args.quick else 30
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    tf.get_logger().setLevel("ERROR")
    started = time.perf_counter()
    info = machine_info()
    print(f"machine: {describe(info)}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="mtmm_kendall_") as workdir:
        for seed in args.seeds:
            run = run_seed(seed, args, Path(workdir))
            runs.append(run)
            sigma = {task: figure["sigma_label_units"] for task, figure in run["tasks"].items()}
            print(
                f"seed {seed}: {run['epochs_run']} epochs in {run['seconds']:.0f} s; σ in label units "
                f"y1 = {sigma['y1']:.2f}, y2 = {sigma['y2']:.2f}; σ1 > σ2: {run['sigma1_gt_sigma2']}"
            )
    total = time.perf_counter() - started
    held = sum(run["sigma1_gt_sigma2"] for run in runs)
    summary = {
        "sigma1_gt_sigma2_seeds": f"{held}/{len(runs)}",
        "median_sigma_label_units": {
            task: statistics.median(run["tasks"][task]["sigma_label_units"] for run in runs) for task in TRUE_NOISE
        },
        "median_sigma_learned": {
            task: statistics.median(run["tasks"][task]["sigma_learned"] for run in runs) for task in TRUE_NOISE
        },
        "median_sigma_ratio_label_units": statistics.median(run["sigma_ratio_label_units"] for run in runs),
        "true_sigma_ratio": TRUE_NOISE["y1"] / TRUE_NOISE["y2"],
    }
    payload = {
        "benchmark": "kendall_toy",
        "machine": info,
        "parameters": {
            "quick": args.quick,
            "seeds": args.seeds,
            "num_examples": args.num_examples,
            "num_features": NUM_FEATURES,
            "scale": args.scale,
            "true_noise": TRUE_NOISE,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "route": "CSV in a temporary folder -> keras_mtmm.training.run.train (data.source: csv)",
            "model": "numeric modality (identity encoder), early fusion, hard sharing [64, 32], towers [16], dropout 0",
            "sigma_units": (
                "sigma_learned = exp(s/2) in units of the task's training-target std (the loss is the scaled MSE); "
                "sigma_label_units = sigma_learned * target_std"
            ),
        },
        "runs": runs,
        "summary": summary,
        "total_seconds": total,
        "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
    }
    path = write_json(args.output, payload)
    print()
    print(format_table(runs))
    print()
    print(
        f"σ1 > σ2 in {summary['sigma1_gt_sigma2_seeds']} seeds; median σ in label units "
        f"y1 = {summary['median_sigma_label_units']['y1']:.2f} (true 10), "
        f"y2 = {summary['median_sigma_label_units']['y2']:.2f} (true 1); "
        f"ratio {summary['median_sigma_ratio_label_units']:.1f} (true 10)"
    )
    print(f"total {total:.0f} s; wrote {path}")
    return payload


if __name__ == "__main__":
    main()
