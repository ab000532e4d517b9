"""Distributed training and checkpointing overheads: `training.distribute` none / mirrored / multi_worker, and
`training.checkpoint_every`, side by side on the demo model, in one run.

Every configuration trains the demo config (configs/demo.yaml, `sharing.dropout=0.0`, global batch 64, the
same rows and epochs: 4,100 rows, i.e. 3,280 training rows = 52 steps per epoch, so that a save every 50
steps happens once per epoch; 3 epochs) in a process of its own, because logical devices must be set before
TensorFlow starts:

- `none`: one device, the baseline;
- `mirrored`: `MirroredStrategy` over 2 logical CPU devices in one process (each replica takes 32 of the 64);
- `multi_worker`: `MultiWorkerMirroredStrategy`, 2 local workers started by `mtmm launch --workers 2`
  (TF_CONFIG on loopback, collectives over gRPC); worker 0's figures are reported;
- `checkpoint_every_N`: `none` saving the training state every N steps (`keras_mtmm.training.checkpointing`) besides
  the epoch-end save that every configuration makes.

Training examples/s = training rows / epoch time (`history["epoch_time_s"]`, validation included), the
median of the epochs after the first (which traces). The set of configurations is repeated `--repeats`
times, the order rotated each repeat, and the medians over repeats are reported, with ratios to `none`.
Checkpoint overhead = epoch time with checkpoints / without − 1; the time of one save is derived from it
((epoch time with − without) / extra saves per epoch) and also measured directly (the child times each
`StepCheckpoint.save`).

On a 2-core machine nothing can scale: both replicas of `mirrored` and both workers of `multi_worker`
share the same two cores (each worker process sizes its thread pools for all of them), so a ratio
below 1 is the overhead of the distributed path (splitting batches, all-reducing gradients and the
global-batch losses, the custom loop, gRPC between the workers), not a scaling result. On N real
devices or machines the same overheads stand against N× the compute.

    python benchmarks/scaling.py            # full run (~12 min on 2 cores)
    python benchmarks/scaling.py --quick    # smoke run (~3-4 min, 600 rows: no save mid-epoch; not meaningful)

Writes benchmarks/results/scaling.json. Nothing is asserted; a configuration that fails is reported with
its error, and the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from machine import describe, machine_info, write_json  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
RESULTS = Path(__file__).resolve().parent / "results" / "scaling.json"
MARK = "SCALING "
WORKERS = 2

# Run in a child process (one per configuration, or per worker): set the logical devices, train, print figures.
CHILD = """
import json, os, sys, time
spec = json.loads(sys.argv[1])
import tensorflow as tf
if spec["logical_cpus"] > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * spec["logical_cpus"])
from keras_mtmm.training import checkpointing
from keras_mtmm.config.loading import load_config
from keras_mtmm.data.tables import load_splits, num_rows
from keras_mtmm.training import run as training
from keras_mtmm.training.run import train
strategies = []
make_strategy = training.make_strategy
def recording_strategy(kind):
    strategies.append(make_strategy(kind))
    return strategies[-1]
training.make_strategy = recording_strategy
saves = []
original_save = checkpointing.StepCheckpoint.save
def timed_save(self, epoch, step):
    started = time.perf_counter()
    original_save(self, epoch, step)
    saves.append({"epoch": epoch, "step": step, "s": time.perf_counter() - started})
checkpointing.StepCheckpoint.save = timed_save
config = load_config(spec["config"], spec["overrides"])
result = train(config, output_dir=spec["output_dir"], export=False, verbose=0)
figures = {
    "train_rows": num_rows(load_splits(config)["train"]),
    "epoch_time_s": result.history["epoch_time_s"],
    "fit_s": result.timings["fit_s"],
    "replicas": strategies[0].num_replicas_in_sync,
    "saves": saves,
    "final_loss": result.history["loss"][-1],
}
print(spec["mark"] + json.dumps(figures), flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 600 rows, 2 epochs, 1 repeat")
    parser.add_argument("--num-examples", type=int, default=None, help="data.num_examples (default 4100; quick 600)")
    parser.add_argument("--epochs", type=int, default=None, help="training.epochs (default 3; quick 2)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats of the whole set (default 2; quick 1)")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch size (default 64)")
    parser.add_argument(
        "--checkpoint-every", type=int, nargs="+", default=[10, 50], help="checkpoint intervals in steps (10 50)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one configuration may run")
    parser.add_argument("--output", default=str(RESULTS), help="where to write the JSON")
    args = parser.parse_args()
    num_examples = args.num_examples or (600 if args.quick else 4100)
    epochs = args.epochs or (2 if args.quick else 3)
    repeats = args.repeats or (1 if args.quick else 2)
    common = [
        f"data.num_examples={num_examples}",
        f"training.epochs={epochs}",
        f"training.batch_size={args.batch_size}",
        "sharing.dropout=0.0",
        "training.early_stopping_patience=100",
    ]
    configurations = {
        "none": ("none", 1, []),
        "mirrored": ("mirrored", WORKERS, []),
        "multi_worker": ("multi_worker", 1, []),
        **{f"checkpoint_every_{n}": ("none", 1, [f"training.checkpoint_every={n}"]) for n in args.checkpoint_every},
    }

    started = time.perf_counter()
    runs: dict[str, list[dict]] = {name: [] for name in configurations}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(repeats):
            names = list(configurations)
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            for name in order:
                distribute, logical_cpus, extra = configurations[name]
                spec = {
                    "config": str(DEMO_CONFIG),
                    "overrides": [*common, f"training.distribute={distribute}", *extra],
                    "output_dir": str(Path(folder) / f"{name}_{repeat}"),
                    "logical_cpus": logical_cpus,
                    "mark": MARK,
                }
                run = _run(spec, distribute == "multi_worker", args.timeout)
                run["repeat"] = repeat
                runs[name].append(run)
                status = f"{run['examples_per_s']:.0f} examples/s" if run["ok"] else f"FAILED: {run['error']}"
                print(f"repeat {repeat + 1}/{repeats} {name}: {status} ({run['process_s']:.0f} s)", flush=True)

    figures = _summarise(runs, args.checkpoint_every)
    parameters = {
        "quick": args.quick,
        "num_examples": num_examples,
        "epochs": epochs,
        "repeats": repeats,
        "global_batch_size": args.batch_size,
        "checkpoint_every": args.checkpoint_every,
        "workers": WORKERS,
        "mirrored_logical_cpus": WORKERS,
        "overrides": common,
        "model": "configs/demo.yaml",
        "wall_s": time.perf_counter() - started,
    }
    info = machine_info()
    write_json(args.output, {"machine": info, "parameters": parameters, "figures": figures, "runs": runs})
    print(describe(info))
    print(_table(figures))
    print(f"whole run: {parameters['wall_s']:.0f} s; wrote {args.output}")


def _run(spec: dict, multi_worker: bool, timeout: float) -> dict:
    """One configuration in its own process(es): the child's figures, or the error it failed with."""
    child = [sys.executable, "-c", CHILD, json.dumps(spec)]
    prefix = ""
    if multi_worker:
        launch = [sys.executable, "-m", "keras_mtmm.cli.commands", "launch", "--workers", str(WORKERS)]
        child = [*launch, "--timeout", str(int(timeout)), "--", *child]
        prefix = "[worker 0] "
    started = time.perf_counter()
    try:
        done = subprocess.run(
            child,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout + 60,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        output, errors, status = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        output, errors, status = _text(expired.stdout), _text(expired.stderr), f"timeout after {timeout + 60:g} s"
    process_s = time.perf_counter() - started
    lines = [line[len(prefix + MARK) :] for line in output.splitlines() if line.startswith(prefix + MARK)]
    if status != 0 or not lines:
        noise = ("I0000 ", "WARNING: All log messages before absl")  # TensorFlow's start-up chatter
        tail = [line for line in errors.strip().splitlines() if line.strip() and not line.startswith(noise)][-15:]
        return {"ok": False, "status": status, "error": "\n".join(tail) or "no figures printed", "process_s": process_s}
    figures = json.loads(lines[-1])
    epochs = figures["epoch_time_s"]
    epoch_s = statistics.median(epochs[1:] if len(epochs) > 1 else epochs)
    mid_epoch_saves = [save for save in figures["saves"] if save["step"]]
    return {
        "ok": True,
        "process_s": process_s,
        "train_rows": figures["train_rows"],
        "replicas": figures["replicas"],
        "epoch_s": epoch_s,
        "first_epoch_s": epochs[0],
        "epoch_time_s": epochs,
        "fit_s": figures["fit_s"],
        "examples_per_s": figures["train_rows"] / epoch_s,
        "saves": len(figures["saves"]),
        "saves_per_epoch": len(figures["saves"]) / len(epochs),
        "save_s_mean": statistics.mean(save["s"] for save in figures["saves"]) if figures["saves"] else None,
        "mid_epoch_save_s_mean": statistics.mean(s["s"] for s in mid_epoch_saves) if mid_epoch_saves else None,
        "final_loss": figures["final_loss"],
    }


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def _median(values):
    values = [value for value in values if value is not None]
    return statistics.median(values) if values else None


def _summarise(runs: dict[str, list[dict]], intervals: list[int]) -> dict:
    figures = {}
    for name, attempts in runs.items():
        good = [run for run in attempts if run["ok"]]
        entry = {"runs": len(attempts), "failed": len(attempts) - len(good)}
        entry["errors"] = [run["error"] for run in attempts if not run["ok"]]
        if good:
            entry.update(
                {
                    "replicas": good[0]["replicas"],
                    "train_rows": good[0]["train_rows"],
                    "examples_per_s": _median(run["examples_per_s"] for run in good),
                    "epoch_s": _median(run["epoch_s"] for run in good),
                    "first_epoch_s": _median(run["first_epoch_s"] for run in good),
                    "fit_s": _median(run["fit_s"] for run in good),
                    "process_s": _median(run["process_s"] for run in good),
                    "saves_per_epoch": _median(run["saves_per_epoch"] for run in good),
                    "save_s_mean": _median(run["save_s_mean"] for run in good),
                    "mid_epoch_save_s_mean": _median(run["mid_epoch_save_s_mean"] for run in good),
                }
            )
        figures[name] = entry

    base = figures["none"]
    by_repeat = {run["repeat"]: run for run in runs["none"] if run["ok"]}
    for name, entry in figures.items():
        if "examples_per_s" not in entry or "examples_per_s" not in base:
            continue
        entry["examples_per_s_vs_none"] = entry["examples_per_s"] / base["examples_per_s"]
        entry["examples_per_s_vs_none_per_repeat"] = [
            run["examples_per_s"] / by_repeat[run["repeat"]]["examples_per_s"]
            for run in runs[name]
            if run["ok"] and run["repeat"] in by_repeat
        ]
    for every in intervals:
        entry = figures[f"checkpoint_every_{every}"]
        if "epoch_s" not in entry or "epoch_s" not in base:
            continue
        entry["checkpoint_every"] = every
        entry["epoch_overhead_pct"] = 100 * (entry["epoch_s"] / base["epoch_s"] - 1)
        extra = entry["saves_per_epoch"] - base["saves_per_epoch"]
        entry["extra_saves_per_epoch"] = extra
        # None when the interval is not shorter than an epoch: no save beyond the epoch-end one to time.
        entry["derived_save_s"] = (entry["epoch_s"] - base["epoch_s"]) / extra if extra > 0 else None
        # What the directly timed saves predict: extra saves per epoch × one save's time / the baseline's epoch.
        save_s = entry["mid_epoch_save_s_mean"] or 0.0
        entry["expected_overhead_pct"] = 100 * extra * save_s / base["epoch_s"]
    return figures


def _table(figures: dict) -> str:
    lines = [
        f"{'configuration':<20} {'replicas':>8} {'epoch s':>8} {'examples/s':>10} {'× none':>7} {'per repeat':>11} "
        f"{'saves/epoch':>11} {'save ms':>8} {'overhead':>9} {'expected':>9} {'derived save ms':>15}"
    ]
    for name, entry in figures.items():
        if "examples_per_s" not in entry:
            lines.append(f"{name:<20} failed {entry['failed']}/{entry['runs']}: {entry['errors'][0].splitlines()[-1]}")
            continue
        overhead = f"{entry['epoch_overhead_pct']:+8.1f}%" if "epoch_overhead_pct" in entry else f"{'':>9}"
        expected = f"{entry['expected_overhead_pct']:+8.1f}%" if "expected_overhead_pct" in entry else f"{'':>9}"
        derived = entry.get("derived_save_s")
        save = entry["mid_epoch_save_s_mean"] or entry["save_s_mean"]
        per_repeat = "/".join(f"{ratio:.2f}" for ratio in entry["examples_per_s_vs_none_per_repeat"])
        lines.append(
            f"{name:<20} {entry['replicas']:>8} {entry['epoch_s']:8.2f} {entry['examples_per_s']:10.0f} "
            f"{entry['examples_per_s_vs_none']:7.2f} {per_repeat:>11} {entry['saves_per_epoch']:11.1f} "
            f"{save * 1000 if save is not None else float('nan'):8.0f} {overhead} {expected} "
            f"{derived * 1000 if derived is not None else float('nan'):15.0f}"
        )
        if entry["failed"]:
            last = entry["errors"][0].splitlines()[-1]
            lines.append(f"{'':<20} ({entry['failed']} of {entry['runs']} runs failed: {last})")
    lines.append(
        "epoch s: median epoch after the first (validation included; the epoch-end save is stamped after it); "
        "save ms: one mid-epoch save (else any save), timed in the child; overhead: epoch time vs none; "
        "expected: mid-epoch saves × save time / none's epoch"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
