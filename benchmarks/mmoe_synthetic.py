"""MMoE's synthetic benchmark (Ma et al., KDD 2018, §3): hard sharing vs MMoE vs PLE, and DeepCTR side by side.

A reproduction study, not a demo: for task correlations p in {1.0, 0.5, 0.0}
it trains keras_mtmm's `hard`, `mmoe` and `ple` (CGC) sharing with matched
parameter budgets over several seeds, and DeepCTR 0.9.4's `SharedBottom`
and `MMOE` on the same data in the same run. It reports test MSE per task
(mean, median, spread), how many runs collapsed (a task whose test MSE stays
above 90% of its label variance), parameter counts, and training throughput
(examples/s over the epochs after the first, i.e. after tracing/compilation).

Data (REFERENCES.md §3): orthogonal unit vectors u1, u2 in R^d;
w1 = c·u1, w2 = c·(p·u1 + sqrt(1-p²)·u2); x ~ N(0, I_d);
y_k = w_kᵀx + Σ_{i=1..m} sin(α_i·w_kᵀx + β_i) + ε, ε ~ N(0, 0.01),
with d = 100, m = 10, α_i, β_i ~ N(0, 1) drawn once (data seed 0).

    pip install -e ".[bench]"          # DeepCTR (optional: without it, its rows are skipped)
    python benchmarks/mmoe_synthetic.py [--quick] [--seeds 5] [--epochs 20]

Writes benchmarks/results/mmoe_synthetic.json (figures + machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from machine import machine_info, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "mmoe_synthetic.json"
TASKS = ("y1", "y2")


def synthetic_data(
    num_rows: int, correlation: float, dimension: int = 100, scale: float = 1.0, sines: int = 10, seed: int = 0
):
    """x [N, d] and labels y1, y2 [N] with task correlation controlled by `correlation`."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(dimension, 2)))
    u1, u2 = basis[:, 0], basis[:, 1]
    w1 = scale * u1
    w2 = scale * (correlation * u1 + np.sqrt(max(0.0, 1 - correlation**2)) * u2)
    alphas, betas = rng.normal(size=sines), rng.normal(size=sines)
    x = rng.normal(size=(num_rows, dimension)).astype(np.float32)
    labels = []
    for w in (w1, w2):
        projection = x @ w
        y = projection + np.sin(np.outer(projection, alphas) + betas).sum(axis=1) + rng.normal(0, 0.1, num_rows)
        labels.append(y.astype(np.float32))
    return x, labels[0], labels[1]


def split(x, y1, y2, seed: int = 0):
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = n_val = len(x) // 10
    parts = {"test": order[:n_test], "validation": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    return {name: (x[rows], y1[rows], y2[rows]) for name, rows in parts.items()}


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_train_begin(self, logs=None):
        self.durations = []

    def on_epoch_end(self, epoch, logs=None):
        self.durations.append(time.perf_counter() - self.started)


def throughput(durations: list[float], rows: int) -> float:
    steady = durations[1:] or durations
    return rows / statistics.median(steady)


# ---------------------------------------------------------------------------
# keras_mtmm


SHARING = {
    "hard": {"type": "hard", "shared_units": [113], "tower_units": [8], "dropout": 0.0},
    "mmoe": {"type": "mmoe", "num_experts": 8, "expert_units": [16], "tower_units": [8], "dropout": 0.0},
    "ple": {
        "type": "ple",
        "num_levels": 1,
        "num_shared_experts": 4,
        "num_task_experts": 2,
        "expert_units": [16],
        "tower_units": [8],
        "dropout": 0.0,
    },
}


def keras_mtmm_run(kind: str, data, seed: int, epochs: int, fast: bool) -> dict:
    from keras_mtmm.config.loading import config_from_dict
    from keras_mtmm.data.pipeline import make_dataset, make_input_dataset
    from keras_mtmm.models.multitask import compile_model
    from keras_mtmm.models.network import build_model
    from keras_mtmm.preprocessing.preprocessor import Preprocessor

    dimension = data["train"][0].shape[1]
    columns = [f"x{i}" for i in range(dimension)]
    config = config_from_dict(
        {
            "name": f"synthetic_{kind}",
            "seed": seed,
            "modalities": {"features": {"type": "numeric", "columns": columns, "encoder": {"type": "identity"}}},
            "fusion": {"strategy": "early"},
            "sharing": SHARING[kind],
            "tasks": {task: {"type": "regression", "label": task} for task in TASKS},
            "training": {
                "epochs": epochs,
                "batch_size": 256,
                "learning_rate": 0.001,
                "jit_compile": fast,
                "steps_per_execution": 32 if fast else 1,
                "cache": fast,
            },
        }
    )
    tables = {name: _table(part, columns) for name, part in data.items()}
    keras.utils.set_random_seed(seed)
    with tempfile.TemporaryDirectory() as folder:
        preprocessor = Preprocessor.from_settings(config)
        preprocessor.adapt(tables["train"], folder)
        network = build_model(config, preprocessor)
        model = compile_model(network, config, preprocessor, {task: 1.0 for task in TASKS}, seed=seed)
        train = make_dataset(preprocessor, tables["train"], 256, shuffle=True, seed=seed, cache=fast)
        timer = EpochTimer()
        model.fit(train, epochs=epochs, callbacks=[timer], verbose=0, shuffle=False)
        raw = preprocessor.raw_inputs(tables["test"])
        predictions = network.predict(make_input_dataset(preprocessor, raw, 1024), verbose=0)
    return {
        "mse": {task: float(np.mean((predictions[task][:, 0] - tables["test"][task]) ** 2)) for task in TASKS},
        "examples_per_s": throughput(timer.durations, len(data["train"][0])),
        "params": int(network.count_params()),
    }


def _table(part, columns):
    x, y1, y2 = part
    table = {name: x[:, i] for i, name in enumerate(columns)}
    table["y1"], table["y2"] = y1, y2
    return table


# ---------------------------------------------------------------------------
# DeepCTR


def deepctr_available() -> bool:
    try:
        import deepctr  # noqa: F401
    except ImportError:
        return False
    return True


def deepctr_run(kind: str, data, seed: int, epochs: int) -> dict:
    from deepctr.feature_column import DenseFeat
    from deepctr.models import MMOE, SharedBottom

    x_train, y1, y2 = data["train"]
    columns = [DenseFeat(f"x{i}", 1) for i in range(x_train.shape[1])]
    keras.utils.set_random_seed(seed)
    task_types, task_names = ("regression", "regression"), TASKS
    if kind == "mmoe":
        model = MMOE(
            columns,
            num_experts=8,
            expert_dnn_hidden_units=(16,),
            tower_dnn_hidden_units=(8,),
            gate_dnn_hidden_units=(),
            task_types=task_types,
            task_names=task_names,
            seed=seed,
        )
    else:
        model = SharedBottom(
            columns,
            bottom_dnn_hidden_units=(113,),
            tower_dnn_hidden_units=(8,),
            task_types=task_types,
            task_names=task_names,
            seed=seed,
        )
    model.compile(keras.optimizers.Adam(0.001), loss=["mse", "mse"])
    features = lambda x: {f"x{i}": x[:, i] for i in range(x.shape[1])}  # noqa: E731
    timer = EpochTimer()
    model.fit(features(x_train), [y1, y2], batch_size=256, epochs=epochs, callbacks=[timer], verbose=0, shuffle=True)
    x_test, t1, t2 = data["test"]
    p1, p2 = model.predict(features(x_test), batch_size=1024, verbose=0)
    return {
        "mse": {"y1": float(np.mean((p1[:, 0] - t1) ** 2)), "y2": float(np.mean((p2[:, 0] - t2) ** 2))},
        "examples_per_s": throughput(timer.durations, len(x_train)),
        "params": int(model.count_params()),
    }


# ---------------------------------------------------------------------------


def summarize(runs: list[dict], variances: dict[str, float]) -> dict:
    summary = {"runs": len(runs), "params": runs[0]["params"]}
    for task in TASKS:
        values = [r["mse"][task] for r in runs]
        summary[task] = {
            "mean": statistics.fmean(values),
            "median": statistics.median(values),
            "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values),
            "max": max(values),
        }
    summary["collapsed_runs"] = sum(any(r["mse"][t] > 0.9 * variances[t] for t in TASKS) for r in runs)
    summary["examples_per_s_median"] = statistics.median(r["examples_per_s"] for r in runs)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 4 epochs, 6k rows, p in {1, 0}")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--scale", type=float, default=1.0, help="c in w = c·u")
    args = parser.parse_args()
    correlations = [1.0, 0.5, 0.0]
    if args.quick:
        args.seeds, args.epochs, args.rows, correlations = 2, 4, 6000, [1.0, 0.0]
    with_deepctr = deepctr_available()
    started = time.perf_counter()
    results = {}
    for p in correlations:
        data = split(*synthetic_data(args.rows, p, scale=args.scale))
        variances = {task: float(np.var(data["test"][1 + i])) for i, task in enumerate(TASKS)}
        runs: dict[str, list[dict]] = {}
        for seed in range(args.seeds):
            for kind in ("hard", "mmoe", "ple"):  # interleaved: noise hits every model alike
                runs.setdefault(f"keras_mtmm/{kind}", []).append(keras_mtmm_run(kind, data, seed, args.epochs, True))
            if with_deepctr:
                for kind in ("shared_bottom", "mmoe"):
                    runs.setdefault(f"deepctr/{kind}", []).append(deepctr_run(kind, data, seed, args.epochs))
        # Throughput of keras_mtmm's plain defaults (no XLA, one step per call, no cache), one seed.
        runs["keras_mtmm/mmoe (defaults)"] = [keras_mtmm_run("mmoe", data, 0, args.epochs, False)]
        results[str(p)] = {
            "label_variance": variances,
            "models": {name: summarize(model_runs, variances) for name, model_runs in runs.items()},
            "raw": runs,
        }
        print(f"\np = {p}  (test label variance y1 {variances['y1']:.3f}, y2 {variances['y2']:.3f})")
        print(
            f"  {'model':<28}{'params':>8}{'y1 mean':>10}{'y1 med':>9}{'y2 mean':>10}{'y2 med':>9}"
            f"{'spread':>9}{'fail':>6}{'ex/s':>10}"
        )
        for name, s in results[str(p)]["models"].items():
            spread = max(s["y1"]["stdev"], s["y2"]["stdev"])
            print(
                f"  {name:<28}{s['params']:>8}{s['y1']['mean']:>10.4f}{s['y1']['median']:>9.4f}{s['y2']['mean']:>10.4f}"
                f"{s['y2']['median']:>9.4f}{spread:>9.4f}{s['collapsed_runs']:>6}{s['examples_per_s_median']:>10.0f}"
            )
    ratios = {}
    if with_deepctr:
        for p, result in results.items():
            models = result["models"]
            ours, theirs = models["keras_mtmm/mmoe"], models["deepctr/mmoe"]
            ratios[p] = {
                "mmoe_mse_ratio_y1": ours["y1"]["mean"] / theirs["y1"]["mean"],
                "mmoe_mse_ratio_y2": ours["y2"]["mean"] / theirs["y2"]["mean"],
                "mmoe_throughput_ratio": ours["examples_per_s_median"] / theirs["examples_per_s_median"],
                "mmoe_defaults_throughput_ratio": models["keras_mtmm/mmoe (defaults)"]["examples_per_s_median"]
                / theirs["examples_per_s_median"],
                "hard_vs_shared_bottom_throughput_ratio": models["keras_mtmm/hard"]["examples_per_s_median"]
                / models["deepctr/shared_bottom"]["examples_per_s_median"],
            }
        print("\nratios keras_mtmm / DeepCTR (MSE: < 1 is better; throughput: > 1 is faster)")
        for p, r in ratios.items():
            print(f"  p = {p}: " + ", ".join(f"{k}={v:.3f}" for k, v in r.items()))
    else:
        print("\nDeepCTR is not installed (pip install -e '.[bench]'): its rows are skipped")
    write_json(
        RESULTS,
        {
            "benchmark": "mmoe_synthetic",
            "machine": machine_info(),
            "parameters": {**vars(args), "correlations": correlations, "batch_size": 256, "learning_rate": 0.001},
            "results": results,
            "ratios_keras_mtmm_over_deepctr": ratios,
            "wall_s": time.perf_counter() - started,
        },
    )
    print(f"\nwritten {RESULTS} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
