"""Step time of every task-weighting strategy relative to `static`, for T = 2, 3 and 5 tasks.

The model is the demo's (configs/demo.yaml: image CNN + text Conv1D + numeric
MLP + categorical embeddings, early fusion, hard sharing) on fewer examples.
The task sets:

    T=2: shape (multiclass), price (regression)
    T=3: the demo's shape, premium (binary), price
    T=5: T=3 plus shape_2 (multiclass on `shape`) and price_2 (regression on `price`)

For each T, one training dataset is made with `make_dataset` (cached in memory
by default, so the figures are the model's step, not PNG decoding), and one
model per strategy with `build_model` + `compile_model`. Each model first runs
a warm-up `fit` of `--warmup-steps` steps (tracing and compilation), then
`--repeats` timed `fit(steps_per_epoch=K+1, epochs=1)` calls, the strategies
interleaved in a rotating order within each repeat so that machine noise
hits all of them alike. A callback stamps the end of every training batch;
the step time of a call is (end of batch K+1 − end of batch 1) / K, so fit's
start-up and the first batch of the call are left out. The reported figure is
the median over repeats; the ratio is that median over static's.
`inverse_size` runs the very same computation as `static` (fixed weights,
other values), so its ratio's distance from 1 shows the measurement noise.

    python benchmarks/weighting_overhead.py            # the full run (~8 min on 2 cores)
    python benchmarks/weighting_overhead.py --quick    # a smoke run (~1 min)

Writes benchmarks/results/weighting_overhead.json (figures, parameters, machine).
No timing is asserted; the issue's targets are reported as met or not.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import yaml  # noqa: E402
from machine import describe, machine_info, write_json  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
RESULTS = Path(__file__).resolve().parent / "results" / "weighting_overhead.json"

STRATEGIES = (
    "static",
    "inverse_size",
    "uncertainty",
    "dwa",
    "rlw",
    "famo",
    "famo_next_batch",
    "pcgrad",
    "cagrad",
    "mgda",
    "gradnorm",
    "graddrop",
    "gradvac",
    "db_mtl",
    "nash_mtl",
    "imtl",
    "upgrad",
    "aligned_mtl",
)
# Benchmark entries that are a strategy with other settings: name -> config overrides.
VARIANTS = {"famo_next_batch": ["weighting.strategy=famo", "weighting.famo_update=next_batch"]}

EXTRA_TASKS = {
    "shape_2": {"type": "multiclass", "label": "shape", "weight": 1.0, "metrics": ["accuracy"]},
    "price_2": {"type": "regression", "label": "price", "weight": 1.0, "metrics": ["mae"]},
}
TASK_SETS = {
    2: ["shape", "price"],
    3: ["shape", "premium", "price"],
    5: ["shape", "premium", "price", "shape_2", "price_2"],
}

# The targets at T = 3: step time at most this many times static's.
TARGETS_AT_3 = {
    "gradnorm": 2.0,
    "pcgrad": 2.5,
    "mgda": 2.5,
    "cagrad": 2.5,
    "graddrop": 2.5,
    "gradvac": 2.5,
    "db_mtl": 2.5,
    "famo": 1.2,
    "famo_next_batch": 1.2,
    "nash_mtl": 2.5,
    "imtl": 2.5,
    "upgrad": 2.5,
    "aligned_mtl": 2.5,
}


class BatchClock(keras.callbacks.Callback):
    """Records (batch index, time) at the end of every training batch.

    Not async-safe on purpose: Keras then dispatches it synchronously, so
    each stamp follows the finished step.
    """

    def __init__(self):
        super().__init__()
        self.stamps: list[tuple[int, float]] = []

    def on_train_batch_end(self, batch, logs=None):
        self.stamps.append((int(batch), time.perf_counter()))

    def seconds_per_step(self) -> float:
        (first_batch, first_time), (last_batch, last_time) = self.stamps[0], self.stamps[-1]
        return (last_time - first_time) / max(last_batch - first_batch, 1)


def experiment_dict(num_tasks: int, num_examples: int, batch_size: int, seed: int) -> dict:
    """The demo config as plain data, with the task set for `num_tasks`."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    every_task = {**raw["tasks"], **EXTRA_TASKS}
    raw["name"] = f"weighting_overhead_t{num_tasks}"
    raw["seed"] = seed
    raw["tasks"] = {task: every_task[task] for task in TASK_SETS[num_tasks]}
    raw["data"]["num_examples"] = num_examples
    raw["training"]["batch_size"] = batch_size
    return raw


def measure_task_count(num_tasks: int, args, workdir: Path) -> dict:
    """Warm up and time every strategy for one task set; returns the figures for it."""
    from keras_mtmm.config.loading import config_from_dict
    from keras_mtmm.data.pipeline import make_dataset
    from keras_mtmm.data.tables import load_splits, num_rows
    from keras_mtmm.models.multitask import compile_model
    from keras_mtmm.models.network import build_model
    from keras_mtmm.preprocessing.preprocessor import Preprocessor
    from keras_mtmm.training.result import seed_everything
    from keras_mtmm.weighting import resolve_task_weights

    raw = experiment_dict(num_tasks, args.num_examples, args.batch_size, args.seed)
    base = config_from_dict(raw, args.set)
    seed_everything(base.seed, base.training.deterministic)
    splits = load_splits(base)
    train_table = splits["train"]
    preprocessor = Preprocessor.from_settings(base)
    preprocessor.adapt(train_table, workdir / f"preprocessor_t{num_tasks}")
    _, masks = preprocessor.encode_labels(train_table)
    label_counts = {task: int(mask.sum()) for task, mask in masks.items()}

    dataset = make_dataset(
        preprocessor,
        train_table,
        base.training.batch_size,
        shuffle=True,
        seed=base.seed,
        shuffle_buffer=base.training.shuffle_buffer,
        repeat=True,
        cache=args.cache,
    )
    batches_per_pass = -(-num_rows(train_table) // base.training.batch_size)
    if args.cache:  # one full pass (and one batch past its end) completes the in-memory cache
        for _ in dataset.take(batches_per_pass + 1):
            pass

    models, warmup_seconds, failures = {}, {}, {}
    for strategy in args.strategies:
        config = config_from_dict(raw, [*args.set, *VARIANTS.get(strategy, [f"weighting.strategy={strategy}"])])
        keras.utils.set_random_seed(config.seed)
        configured = {task: task_config.weight for task, task_config in config.tasks.items()}
        task_weights = resolve_task_weights(config.weighting.strategy, configured, label_counts)
        network = build_model(config, preprocessor)
        model = compile_model(network, config, preprocessor, task_weights, seed=config.seed)
        started = time.perf_counter()
        try:
            model.fit(dataset, steps_per_epoch=args.warmup_steps, epochs=1, verbose=0, shuffle=False)
        except Exception as error:  # reported, so that one broken strategy does not hide the others
            if strategy == "static":
                raise
            failures[strategy] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
            print(f"  T={num_tasks} {strategy:<12} FAILED: {failures[strategy]}")
            continue
        warmup_seconds[strategy] = time.perf_counter() - started
        models[strategy] = model
        print(f"  T={num_tasks} {strategy:<12} warm-up {args.warmup_steps} steps: {warmup_seconds[strategy]:.1f} s")

    per_repeat: dict[str, list[float]] = {strategy: [] for strategy in models}
    order = list(models)
    for repeat in range(args.repeats):
        for strategy in order:
            clock = BatchClock()
            models[strategy].fit(
                dataset, steps_per_epoch=args.steps + 1, epochs=1, verbose=0, shuffle=False, callbacks=[clock]
            )
            per_repeat[strategy].append(clock.seconds_per_step())
        print(
            f"  T={num_tasks} repeat {repeat + 1}/{args.repeats}: "
            + ", ".join(f"{s}={per_repeat[s][-1] * 1e3:.1f}ms" for s in per_repeat)
        )
        order = order[1:] + order[:1]  # rotate: no strategy always runs first or last

    static = statistics.median(per_repeat["static"])
    figures = {strategy: {"error": message} for strategy, message in failures.items()}
    for strategy in per_repeat:
        median = statistics.median(per_repeat[strategy])
        repeat_ratios = [t / s for t, s in zip(per_repeat[strategy], per_repeat["static"])]
        figures[strategy] = {
            "seconds_per_step": median,
            "ratio_to_static": median / static,
            "repeat_seconds_per_step": per_repeat[strategy],
            "repeat_ratios_to_static": repeat_ratios,
            "median_paired_ratio_to_static": statistics.median(repeat_ratios),
            "examples_per_second": base.training.batch_size / median,
            "warmup_seconds": warmup_seconds[strategy],
        }
    shared, specific = _variable_counts(models)
    del models
    gc.collect()
    keras.backend.clear_session()
    return {
        "tasks": {task: {"type": t.type, "label": t.label} for task, t in base.tasks.items()},
        "train_examples": num_rows(train_table),
        "labelled_train_examples": label_counts,
        "shared_parameters": shared,
        "task_specific_parameters": specific,
        "training": {
            key: getattr(base.training, key)
            for key in ("batch_size", "learning_rate", "jit_compile", "steps_per_execution", "deterministic")
        },
        "strategies": {strategy: figures[strategy] for strategy in args.strategies},
    }


def _variable_counts(models: dict) -> tuple[int | None, int | None]:
    """(shared, task-specific) trainable parameter counts, as the gradient strategies partition them."""
    for model in models.values():
        roles = model._roles.value
        if roles is not None:
            variables = model.network.trainable_variables
            shared = sum(int(v.numpy().size) for v, is_shared in zip(variables, roles) if is_shared)
            specific = sum(int(v.numpy().size) for v, is_shared in zip(variables, roles) if not is_shared)
            return shared, specific
    return None, None


def target_checks(results: dict) -> list[dict]:
    """The issue's T=3 targets, each with the measured ratio and whether it was met."""
    at_three = results.get("3", {}).get("strategies", {})
    checks = []
    for strategy, limit in TARGETS_AT_3.items():
        if "ratio_to_static" in at_three.get(strategy, {}):
            ratio = at_three[strategy]["ratio_to_static"]
            checks.append(
                {"strategy": strategy, "num_tasks": 3, "max_ratio": limit, "ratio": ratio, "met": ratio <= limit}
            )
    return checks


def format_table(results: dict, strategies: list[str]) -> str:
    counts = list(results)
    header = f"{'strategy':<13}" + "".join(f"{'T=' + c + ' ms/step':>16}{'× static':>10}" for c in counts)
    lines = [header, "-" * len(header)]
    for strategy in strategies:
        row = f"{strategy:<13}"
        for count in counts:
            figure = results[count]["strategies"][strategy]
            if "error" in figure:
                row += f"{'failed':>16}{'-':>10}"
            else:
                row += f"{figure['seconds_per_step'] * 1e3:>16.1f}{figure['ratio_to_static']:>10.2f}"
        lines.append(row)
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few steps, one repeat, T=3 only")
    parser.add_argument("--num-tasks", type=int, nargs="+", choices=sorted(TASK_SETS), default=None)
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--num-examples", type=int, default=2000, help="demo rows (80%% go to training)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup-steps", type=int, default=None, help="steps of the warm-up fit (default 10)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per repeat (default 100)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3)")
    parser.add_argument("--no-cache", dest="cache", action="store_false", help="decode images every step")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    quick = args.quick
    if args.num_tasks is None:
        args.num_tasks = [3] if quick else [2, 3, 5]
    if args.warmup_steps is None:
        args.warmup_steps = 3 if quick else 10
    if args.steps is None:
        args.steps = 5 if quick else 100
    if args.repeats is None:
        args.repeats = 1 if quick else 3
    if "static" not in args.strategies:
        args.strategies = ["static", *args.strategies]
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    tf.get_logger().setLevel("ERROR")  # IndexedSlices and retracing notices, one per model
    import keras_mtmm.registry  # noqa: F401  (registers every strategy)

    started = time.perf_counter()
    info = machine_info()
    print(f"machine: {describe(info)}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="mtmm_bench_") as workdir:
        for num_tasks in args.num_tasks:
            print(f"T={num_tasks}: tasks {', '.join(TASK_SETS[num_tasks])}")
            results[str(num_tasks)] = measure_task_count(num_tasks, args, Path(workdir))
    total = time.perf_counter() - started
    checks = target_checks(results)
    payload = {
        "benchmark": "weighting_overhead",
        "machine": info,
        "parameters": {
            "quick": args.quick,
            "config": "configs/demo.yaml",
            "overrides": args.set,
            "num_examples": args.num_examples,
            "batch_size": args.batch_size,
            "task_sets": {str(c): TASK_SETS[c] for c in args.num_tasks},
            "extra_tasks": EXTRA_TASKS,
            "strategies": args.strategies,
            "warmup_steps": args.warmup_steps,
            "timed_steps": args.steps,
            "repeats": args.repeats,
            "cache": args.cache,
            "seed": args.seed,
            "method": (
                "per (T, strategy): build_model + compile_model once, a warm-up fit of warmup_steps steps, then "
                "`repeats` x fit(steps_per_epoch=timed_steps+1, epochs=1) with strategies interleaved (rotating "
                "order); seconds/step = (end of last batch - end of first batch) / timed_steps from an "
                "on_train_batch_end callback; figure = median over repeats; ratio = median / static's median"
            ),
        },
        "results": results,
        "targets_at_3_tasks": checks,
        "total_seconds": total,
        "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
    }
    path = write_json(args.output, payload)
    print()
    print(format_table(results, args.strategies))
    print()
    for check in checks:
        verdict = "met" if check["met"] else "NOT met"
        limit, ratio = check["max_ratio"], check["ratio"]
        print(f"target T=3 {check['strategy']}: ≤ {limit}× static, measured {ratio:.2f}× ({verdict})")
    print(f"total {total:.0f} s; wrote {path}")
    return payload


if __name__ == "__main__":
    main()
