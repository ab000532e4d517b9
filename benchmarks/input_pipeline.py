"""The input pipeline vs the model: examples/s from CSV and TFRecord, training's consumption, memory, prepare time.

On the demo catalogue written as a CSV plus a folder of PNG files (as a user
would have it), with the demo config (configs/demo.yaml):

1. `prepare_s`: wall time of `mtmm prepare` (read the CSV, check every image
   decodes, write 4 shards per split) for 1× and 10× the rows.
2. Input pipeline alone, training split, batch 64, shuffled, one epoch:
   examples/s of `make_dataset` from the in-memory CSV table and from the
   TFRecord shards (parse, label encoding, image decode and preprocessing,
   everything up to the model), median of `--repeats` epochs after one
   warm-up epoch; the two sources interleaved epoch by epoch.
3. The model's consumption: training examples/s of `fit` on the demo model
   with the batches cached in memory (so the pipeline costs nothing), median
   epoch after a warm-up epoch. Target: TFRecord pipeline ≥ 3× this.
4. Peak RSS of a 1-epoch training run (`train.py`, no export) streaming the
   TFRecords of 1× and of 10× the rows, each in its own process (the
   process's `ru_maxrss`). Target: 10× within 1.2× of 1×. For contrast, the
   same run on the 10× CSV, which the CSV source holds in memory.

    python benchmarks/input_pipeline.py            # full run (~15 min on 2 cores)
    python benchmarks/input_pipeline.py --quick    # smoke run (~3 min; figures not meaningful)

Writes benchmarks/results/input_pipeline.json. Nothing is asserted; the
targets are reported as met or not.
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
from machine import describe, machine_info, write_json  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
RESULTS = Path(__file__).resolve().parent / "results" / "input_pipeline.json"
COLUMNS = ["image", "description", "weight_kg", "age_days", "rating", "material", "region", "shape", "premium", "price"]

# Run in a child process: one training epoch from the given source, then print the peak RSS.
RSS_CHILD = """
import json, resource, sys
from keras_mtmm.config.loading import load_config
from keras_mtmm.training.run import train
config = load_config(sys.argv[1], ["data.source=" + sys.argv[2], "data.path=" + sys.argv[3], "training.epochs=1"])
result = train(config, output_dir=sys.argv[4], export=False, verbose=0)
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "fit_s": result.timings["fit_s"], "epochs": len(result.history["loss"])}))
"""


def write_csv(folder: Path, rows: int, seed: int) -> Path:
    """The demo catalogue as `folder/items.csv` + `folder/images/*.png`, as a user would have it."""
    from keras_mtmm.data.demo import generate_demo

    images = folder / "images"
    images.mkdir(parents=True)
    table = generate_demo(rows, seed=seed, image_size=32)
    path = folder / "items.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in range(rows):
            image = ""
            if table["image"][row]:
                image = f"images/{row}.png"
                (folder / image).write_bytes(table["image"][row])
            cells = [image] + [_cell(table[name][row]) for name in COLUMNS[1:]]
            writer.writerow(cells)
    return path


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else f"{float(value):.6g}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 400 rows (×10 = 4000), 1 repeat")
    parser.add_argument("--rows", type=int, default=4000, help="rows of the 1× data (default: the demo's 4000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per pipeline")
    parser.add_argument("--output", default=str(RESULTS), help="where to write the JSON")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeats = 400, 1

    from keras_mtmm.config.loading import load_config
    from keras_mtmm.data.tfrecord import prepare

    info = machine_info()
    print(describe(info))
    figures: dict = {"rows_1x": args.rows, "rows_10x": 10 * args.rows}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        configs, prepared = {}, {}
        for scale in (1, 10):
            rows = args.rows * scale
            print(f"writing {rows} rows as CSV + PNG files ...", flush=True)
            csv_path = write_csv(scratch / f"csv_{scale}x", rows, seed=scale)
            overrides = ["data.source=csv", f"data.path={csv_path}"]
            configs[scale] = load_config(DEMO_CONFIG, overrides)
            started = time.perf_counter()
            prepared[scale] = prepare(configs[scale], scratch / f"records_{scale}x", shards=4)
            figures[f"prepare_s_{scale}x"] = time.perf_counter() - started
            print(f"  prepare: {figures[f'prepare_s_{scale}x']:.1f} s", flush=True)

        figures.update(pipeline_throughput(configs[1], prepared[1], args.repeats))
        figures["training_examples_per_s"] = training_throughput(configs[1], args.repeats)
        figures["tfrecord_vs_training"] = figures["tfrecord_examples_per_s"] / figures["training_examples_per_s"]
        figures["csv_table_vs_training"] = figures["csv_table_examples_per_s"] / figures["training_examples_per_s"]
        for scale in (1, 10):
            child = peak_rss("tfrecord", prepared[scale], scratch / f"run_{scale}x")
            figures[f"peak_rss_mib_{scale}x"] = child["peak_rss_mib"]
            figures[f"rss_run_fit_s_{scale}x"] = child["fit_s"]  # shows the 10x run did read 10x the data
            print(f"  peak RSS {scale}x: {child['peak_rss_mib']:.0f} MiB (fit {child['fit_s']:.0f} s)", flush=True)
        # For contrast: the CSV source holds the whole table in memory.
        csv_10x = Path(configs[10].data.path)
        figures["peak_rss_mib_10x_csv_in_memory"] = peak_rss("csv", csv_10x, scratch / "run_10x_csv")["peak_rss_mib"]
        figures["peak_rss_10x_vs_1x"] = figures["peak_rss_mib_10x"] / figures["peak_rss_mib_1x"]

    targets = {
        "tfrecord pipeline >= 3x training consumption": figures["tfrecord_vs_training"] >= 3.0,
        "peak RSS of 10x data within 1.2x of 1x": figures["peak_rss_10x_vs_1x"] <= 1.2,
    }
    payload = {
        "benchmark": "input_pipeline",
        "parameters": {"config": "configs/demo.yaml", "rows": args.rows, "repeats": args.repeats, "batch_size": 64},
        "machine": info,
        "figures": figures,
        "targets_met": targets,
    }
    path = write_json(args.output, payload)
    for key, value in figures.items():
        print(f"{key:<32} {value:.3f}" if isinstance(value, float) else f"{key:<32} {value}")
    for target, met in targets.items():
        print(f"target {'met' if met else 'NOT met'}: {target}")
    print(f"written: {path}")


def pipeline_throughput(config, records_folder: Path, repeats: int) -> dict:
    """Examples/s of the training input pipeline from the CSV table and from the TFRecords, interleaved."""
    from keras_mtmm.config.loading import load_config
    from keras_mtmm.data.pipeline import make_dataset
    from keras_mtmm.data.tables import as_table, load_splits
    from keras_mtmm.preprocessing.preprocessor import Preprocessor

    record_config = load_config(DEMO_CONFIG, ["data.source=tfrecord", f"data.path={records_folder}"])
    sources = {"csv_table": load_splits(config)["train"], "tfrecord": load_splits(record_config)["train"]}
    preprocessor = Preprocessor.from_settings(config)
    with tempfile.TemporaryDirectory() as folder:
        preprocessor.adapt(as_table(sources["csv_table"]), folder)
        datasets = {
            name: make_dataset(preprocessor, split, 64, shuffle=True, seed=1, shuffle_buffer=4096)
            for name, split in sources.items()
        }
        rows = len(next(iter(sources["csv_table"].values())))
        times: dict[str, list[float]] = {name: [] for name in datasets}
        for dataset in datasets.values():  # warm-up epoch (tracing)
            for _ in dataset:
                pass
        for _ in range(repeats):
            for name, dataset in datasets.items():
                started = time.perf_counter()
                for _ in dataset:
                    pass
                times[name].append(time.perf_counter() - started)
    return {f"{name}_examples_per_s": rows / statistics.median(seconds) for name, seconds in times.items()}


def training_throughput(config, repeats: int) -> float:
    """Training examples/s of the demo model on cached batches (the model's own speed)."""
    import keras

    from keras_mtmm.data.pipeline import make_dataset
    from keras_mtmm.data.tables import load_splits
    from keras_mtmm.models.multitask import compile_model
    from keras_mtmm.models.network import build_model
    from keras_mtmm.preprocessing.preprocessor import Preprocessor

    table = load_splits(config)["train"]
    preprocessor = Preprocessor.from_settings(config)
    with tempfile.TemporaryDirectory() as folder:
        preprocessor.adapt(table, folder)
        dataset = make_dataset(preprocessor, table, 64, shuffle=True, seed=1, cache=True)
        model = compile_model(build_model(config, preprocessor), config, preprocessor, {t: 1.0 for t in config.tasks})
        stamps = []

        class Stamp(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                stamps.append(time.perf_counter())

        started = time.perf_counter()
        model.fit(dataset, epochs=repeats + 1, callbacks=[Stamp()], shuffle=False, verbose=0)
    durations = np.diff([started, *stamps])[1:]  # the first epoch traces and fills the cache
    rows = len(next(iter(table.values())))
    return float(rows / np.median(durations))


def peak_rss(source: str, path: Path, run_dir: Path) -> dict:
    """Peak RSS (MiB) and fit seconds of a child process that trains one epoch from `source` at `path`."""
    result = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, str(DEMO_CONFIG), source, str(path), str(run_dir)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
