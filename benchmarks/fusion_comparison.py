"""Every fusion strategy × (hard, mmoe) sharing on the demo data: quality, size, speed, and missing modalities.

For each combination, `train()` runs the demo config (configs/demo.yaml:
image CNN, text Conv1D, numeric MLP, categorical embeddings; tasks shape,
premium = warm colour XOR luxe material, price) with only `fusion.strategy`
(and `fusion.per_task` for the task-conditioned attention row) and
`sharing.type` changed, and exports it. Recorded per run:

- the test-split metrics of every task (shape accuracy, premium accuracy,
  price MAE, and the rest of the report);
- the parameter count of the network;
- training throughput: training examples per second of the median epoch,
  the first epoch (tracing) left out;
- serving latency of the export at batch 1, through its `serving_default`
  signature (raw inputs in, exactly as TF Serving calls it): p50 and p99 over
  `--latency-calls` calls, all exports measured interleaved in one loop so
  machine noise hits them alike;
- the missing-modality robustness table (`evaluate.py --robustness`): each
  task's main metric with all modalities and with each one removed in turn.

One more row trains `early` fusion with `fusion.modality_dropout` at
`--modality-dropout` for every modality (ModDrop), to show what training for
missing modalities buys in the robustness table.

    python benchmarks/fusion_comparison.py            # full run (~25 min on 2 cores)
    python benchmarks/fusion_comparison.py --quick    # smoke run (~3 min; figures not meaningful)

Writes benchmarks/results/fusion_comparison.json. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from machine import describe, machine_info, write_json  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
RESULTS = Path(__file__).resolve().parent / "results" / "fusion_comparison.json"

FUSIONS = {
    "early": [],
    "intermediate": ["fusion.strategy=intermediate", "fusion.depth=2"],
    "weighted": [],
    "late": [],
    "gated": [],
    "attention": [],
    "attention_per_task": ["fusion.strategy=attention", "fusion.per_task=true"],
    "low_rank": [],
    "cross_attention": [],
}
SHARINGS = ("hard", "mmoe")
MAIN_METRICS = {"shape": "accuracy", "premium": "accuracy", "price": "mae"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few rows, 2 epochs, 3 fusions")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the demo's 12)")
    parser.add_argument("--latency-calls", type=int, default=300, help="batch-1 calls per export")
    parser.add_argument("--modality-dropout", type=float, default=0.2, help="rate for the ModDrop row")
    parser.add_argument("--output", default=str(RESULTS), help="where to write the JSON")
    args = parser.parse_args()

    from keras_mtmm.config.loading import load_config
    from keras_mtmm.data.tables import load_splits
    from keras_mtmm.evaluation.robustness import robustness_table
    from keras_mtmm.training.run import train

    base = []
    fusions = dict(FUSIONS)
    if args.quick:
        base = ["data.num_examples=600", "training.epochs=2"]
        fusions = {name: FUSIONS[name] for name in ("early", "attention_per_task", "cross_attention")}
        args.latency_calls = min(args.latency_calls, 40)
    if args.epochs is not None:
        base.append(f"training.epochs={args.epochs}")
    cases = [
        (fusion, sharing, [*base, *(fusions[fusion] or [f"fusion.strategy={fusion}"]), f"sharing.type={sharing}"])
        for fusion in fusions
        for sharing in SHARINGS
    ]
    rate = args.modality_dropout
    dropout = f"fusion.modality_dropout={{image: {rate}, text: {rate}, numeric: {rate}, categorical: {rate}}}"
    cases.append(("early+moddrop", "hard", [*base, "fusion.strategy=early", "sharing.type=hard", dropout]))

    info = machine_info()
    print(describe(info))
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        test_table = None
        for fusion, sharing, overrides in cases:
            config = load_config(DEMO_CONFIG, overrides)
            name = f"{fusion}/{sharing}"
            print(f"training {name} ...", flush=True)
            result = train(
                config, output_dir=scratch / fusion / sharing, export_dir=scratch / "models" / fusion, verbose=0
            )
            if test_table is None:
                splits = load_splits(config)
                test_table, train_rows = splits["test"], len(next(iter(splits["train"].values())))
            epoch_times = result.history.get("epoch_time_s", [])
            steady = epoch_times[1:] or epoch_times
            runs.append(
                {
                    "fusion": fusion,
                    "strategy": config.fusion.strategy,
                    "sharing": sharing,
                    "overrides": overrides,
                    "parameters": int(result.model.count_params()),
                    "epochs_run": len(epoch_times),
                    "train_examples_per_s": train_rows / statistics.median(steady) if steady else None,
                    "test": result.metrics["tasks"],
                    "robustness": _main_metrics(robustness_table(result.export_path, test_table)),
                    "export": str(result.export_path),
                }
            )
        latencies = _latencies([run["export"] for run in runs], test_table, args.latency_calls)
    for run, latency in zip(runs, latencies):
        run["serving_latency_ms_batch_1"] = latency
        del run["export"]

    reference = next(run for run in runs if run["fusion"] == "early" and run["sharing"] == "hard")
    for run in runs:
        expected = run["fusion"].split("+")[0].replace("_per_task", "")
        assert run["strategy"] == expected, f"{run['fusion']} trained {run['strategy']}"  # a config slip, not a result
        run["throughput_vs_early_hard"] = _ratio(run["train_examples_per_s"], reference["train_examples_per_s"])
        run["latency_p50_vs_early_hard"] = _ratio(
            run["serving_latency_ms_batch_1"]["p50"], reference["serving_latency_ms_batch_1"]["p50"]
        )
    payload = {
        "benchmark": "fusion_comparison",
        "parameters": {
            "config": str(DEMO_CONFIG.relative_to(REPO_ROOT)),
            "base_overrides": base,
            "latency_calls": args.latency_calls,
            "modality_dropout": rate,
            "quick": args.quick,
            "test_rows": len(next(iter(test_table.values()))),
        },
        "machine": info,
        "runs": runs,
    }
    path = write_json(args.output, payload)
    print(_table(runs))
    print(_robustness(runs))
    print(f"written: {path}")


def _main_metrics(table: dict) -> dict:
    return {
        condition: {task: results[task][MAIN_METRICS[task]] for task in MAIN_METRICS}
        for condition, results in table.items()
    }


def _latencies(exports: list[str], table: dict, calls: int) -> list[dict]:
    """p50/p99 ms of batch-1 calls per export, the exports interleaved call by call."""
    from keras_mtmm.evaluation.predictor import read_model_files
    from keras_mtmm.evaluation.scoring import raw_inputs

    signatures = []
    for export in exports:
        _, _, metadata = read_model_files(export)
        serving = tf.saved_model.load(export).signatures["serving_default"]
        inputs = raw_inputs(table, metadata)
        spec = serving.structured_input_signature[1]
        rows = [
            {name: tf.constant(values[i : i + 1], dtype=spec[name].dtype) for name, values in inputs.items()}
            for i in range(min(calls, len(next(iter(inputs.values())))))
        ]
        signatures.append((serving, rows))
    for serving, rows in signatures:  # warm-up
        for row in rows[:10]:
            serving(**row)
    times: list[list[float]] = [[] for _ in signatures]
    for i in range(calls):
        for k, (serving, rows) in enumerate(signatures):
            row = rows[i % len(rows)]
            started = time.perf_counter()
            serving(**row)
            times[k].append((time.perf_counter() - started) * 1000)
    return [{"p50": float(np.percentile(t, 50)), "p99": float(np.percentile(t, 99))} for t in times]


def _ratio(value, reference):
    return None if value is None or not reference else value / reference


def _table(runs: list[dict]) -> str:
    lines = [
        "fusion               sharing  shape acc  premium acc  price MAE   params  train ex/s  serve p50 ms  p99 ms"
    ]
    for run in runs:
        test = run["test"]
        latency = run["serving_latency_ms_batch_1"]
        lines.append(
            f"{run['fusion']:<20} {run['sharing']:<8} {test['shape']['accuracy']:>9.3f} "
            f"{test['premium']['accuracy']:>12.3f} {test['price']['mae']:>10.2f} {run['parameters']:>8} "
            f"{run['train_examples_per_s'] or float('nan'):>11.0f} {latency['p50']:>13.2f} {latency['p99']:>7.2f}"
        )
    return "\n".join(lines)


def _robustness(runs: list[dict]) -> str:
    conditions = list(runs[0]["robustness"])
    lines = ["premium accuracy / shape accuracy by condition (hard sharing)"]
    lines.append(f"{'fusion':<20}" + "".join(f"{c.replace('without_', '-'):>16}" for c in conditions))
    for run in runs:
        if run["sharing"] != "hard":
            continue
        cells = "".join(
            f"{run['robustness'][c]['premium']:>8.3f}/{run['robustness'][c]['shape']:<7.3f}" for c in conditions
        )
        lines.append(f"{run['fusion']:<20}{cells}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
