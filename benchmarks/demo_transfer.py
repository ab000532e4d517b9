"""Does multi-task training help on the built-in demo? Δm of the default config against single-task baselines.

For each seed, the demo config (`configs/demo.yaml`, unchanged but for
`seed`, which also seeds the generated data and the split) is trained once
with all its tasks and once per task alone (`keras_mtmm.training.baselines`: same data,
inputs, fusion and sharing, one task, weight 1). Both are scored on the same
test split and compared with `keras_mtmm.evaluation.transfer.compare` (LibMTL's Δm,
higher is better; a task whose mean relative gain is negative is flagged as
negative transfer). Nothing is exported.

    python benchmarks/demo_transfer.py                 # seeds 0 1 2 (~15 min on 2 cores)
    python benchmarks/demo_transfer.py --seeds 0 --set training.epochs=2   # a quick look

Writes benchmarks/results/demo_transfer.json (per seed: each task's metrics,
multi-task and single-task, its gains and delta, Δm, the flags; mean ± std
of Δm and of each task's delta over the seeds; the machine).
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

from machine import describe, machine_info, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "demo_transfer.json"


def run_seed(config_path: Path, seed: int, overrides: list[str], workdir: Path) -> dict:
    """Train the multi-task model and its single-task baselines for one seed; compare them."""
    from keras_mtmm.config.loading import load_config
    from keras_mtmm.evaluation.transfer import compare
    from keras_mtmm.training.baselines import train_baselines
    from keras_mtmm.training.run import train

    config = load_config(config_path, [*overrides, f"seed={seed}"])
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        mtl = train(config, output_dir=workdir / f"mtl_{seed}", export=False, verbose=0)
        mtl_seconds = time.perf_counter() - started
        singles = train_baselines(config, workdir / f"single_{seed}", verbose=0)[seed]
    comparison = compare(mtl.metrics, {task: result.metrics for task, result in singles.items()})
    return {
        "seed": seed,
        "delta_m": comparison["delta_m"],
        "negative_transfer": comparison["negative_transfer"],
        "tasks": comparison["tasks"],
        "mtl_seconds": round(mtl_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }


def summarize(runs: list[dict]) -> dict:
    """Mean ± std (sample, n−1) over seeds of Δm and of each task's delta; how often each task is flagged."""

    def spread(values: list[float]) -> dict:
        return {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values,
        }

    tasks = list(runs[0]["tasks"])
    return {
        "delta_m": spread([run["delta_m"] for run in runs]),
        "task_delta": {task: spread([run["tasks"][task]["delta"] for run in runs]) for task in tasks},
        "negative_transfer_count": {task: sum(task in run["negative_transfer"] for run in runs) for task in tasks},
        "seeds": len(runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    info = machine_info()
    print(describe(info))
    runs = []
    with tempfile.TemporaryDirectory(prefix="demo_transfer_") as tmp:
        for seed in args.seeds:
            run = run_seed(args.config, seed, args.overrides, Path(tmp))
            runs.append(run)
            gains = ", ".join(f"{task} {entry['delta']:+.1f}%" for task, entry in run["tasks"].items())
            flags = ", ".join(run["negative_transfer"]) or "none"
            print(
                f"seed {seed}: Δm {run['delta_m']:+.2f}% ({gains}); negative transfer: {flags}; "
                f"{run['total_seconds']:.0f} s"
            )
    summary = summarize(runs)
    print(f"Δm over {len(runs)} seeds: {summary['delta_m']['mean']:+.2f} ± {summary['delta_m']['std']:.2f}%")
    for task, spread in summary["task_delta"].items():
        print(
            f"  {task}: {spread['mean']:+.2f} ± {spread['std']:.2f}% "
            f"(negative transfer in {summary['negative_transfer_count'][task]} of {len(runs)})"
        )
    path = write_json(
        args.output,
        {
            "machine": info,
            "config": str(args.config),
            "overrides": args.overrides,
            "summary": summary,
            "runs": runs,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
