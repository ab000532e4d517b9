"""Serving latency and throughput: the exported signature directly, and through the client over loopback,
against in-process `model.predict_on_batch` on the same raw inputs, in one run.

The demo model is trained (small) and exported; then, on the same validation
rows, each path answers batch-1 requests (latency p50/p99) and batch-64
requests (throughput, examples/s):

- `in_process`: Preprocessor.transform + `model.predict_on_batch` (Keras, no export; the baseline);
- `in_process_compiled`: the same two steps in one `tf.function` (what a careful in-process server does);
- `signature_tf2`: the export's `serving_default` through `tf.saved_model.load`;
- `signature_tf1`: the export through the TF1 bundle loader + `Session.run` (tensorflow_model_server's path);
- `client_rest_row`, `client_rest_column`, `client_grpc`: `keras_mtmm.serve.client.ServingClient` against the
  TF Serving test double (tests/support/fake_model_server.py: TF1 bundle loader behind Python REST/gRPC
  servers) in a separate process on loopback. The double is Python, so these figures bound the
  client + protocol cost from above; the real C++ server's own overhead is lower.

Paths are measured in interleaved rounds (each round runs every path), so
machine noise hits all of them alike; ratios are relative to `in_process`.

    python benchmarks/serving.py            # full run (~4 min on 2 cores)
    python benchmarks/serving.py --quick    # smoke run (~1.5 min; figures not meaningful)

Writes benchmarks/results/serving.json. Nothing is asserted.
"""

from __future__ import annotations

import argparse
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
RESULTS = Path(__file__).resolve().parent / "results" / "serving.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: small model, few requests")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 10; quick 2)")
    parser.add_argument("--latency-calls", type=int, default=None, help="batch-1 calls per path and round")
    parser.add_argument("--throughput-calls", type=int, default=None, help="batch-64 calls per path and round")
    parser.add_argument("--batch-size", type=int, default=64, help="throughput batch size (default 64)")
    parser.add_argument("--output", default=str(RESULTS), help="where to write the JSON")
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 10)
    latency_calls = args.latency_calls or (10 if args.quick else 40)
    throughput_calls = args.throughput_calls or (3 if args.quick else 10)

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        run, raw = _train(folder, args.quick, args.batch_size)
        callers, server = _callers(run, raw, folder)
        try:
            _check_agreement(callers, raw)
            samples = _measure(callers, raw, rounds, latency_calls, throughput_calls, args.batch_size)
        finally:
            server.terminate()
            server.wait(timeout=20)

    figures = _summarise(samples, args.batch_size)
    parameters = {
        "quick": args.quick,
        "rounds": rounds,
        "latency_calls_per_round": latency_calls,
        "throughput_calls_per_round": throughput_calls,
        "throughput_batch_size": args.batch_size,
        "model": "configs/demo.yaml" + (" (quick: smaller)" if args.quick else ""),
    }
    write_json(args.output, {"machine": machine_info(), "parameters": parameters, "figures": figures})
    print(describe(machine_info()))
    print(_table(figures, args.batch_size))
    print(f"wrote {args.output}")


def _train(folder: Path, quick: bool, batch_size: int):
    from keras_mtmm.config.loading import load_config
    from keras_mtmm.data.tables import as_table, load_splits
    from keras_mtmm.training.run import train

    overrides = ["training.epochs=1", f"data.num_examples={600 if quick else 1200}"]
    config = load_config(DEMO_CONFIG, overrides)
    run = train(config, output_dir=folder / "run", export_dir=folder / "models", verbose=0)
    table = as_table(load_splits(config)["validation"], batch_size)
    return run, run.preprocessor.raw_inputs(table)


def _callers(run, raw, folder: Path):
    """One function per path: raw inputs (dict of arrays) -> outputs; and the stand-in server process."""
    import tensorflow as tf

    from keras_mtmm.serve.client import ServingClient
    from keras_mtmm.training.launch import find_ports

    names = list(raw)
    export = str(run.export_path)
    signature = tf.saved_model.load(export).signatures["serving_default"]
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        bundle = tf.compat.v1.saved_model.loader.load(session, ["serve"], export)
    info = bundle.signature_def["serving_default"]
    fetches = {name: tensor.name for name, tensor in info.outputs.items()}

    grpc_port, rest_port = find_ports(2)
    server = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "tests" / "support" / "fake_model_server.py"), f"--port={grpc_port}"]
        + [f"--rest_api_port={rest_port}", f"--model_config_file={folder / 'models' / 'models.config'}"],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
    )

    def client(transport, form="row"):
        return ServingClient("127.0.0.1", rest_port, grpc_port, model="demo", transport=transport, form=form)

    clients = {"rest_row": client("rest"), "rest_column": client("rest", "column"), "grpc": client("grpc")}
    _wait_for(clients["rest_row"], server)

    def rows(batch):
        return [{name: _python(batch[name][i]) for name in names} for i in range(len(batch[names[0]]))]

    compiled = tf.function(lambda batch: run.model(run.preprocessor.transform(batch), training=False))
    callers = {
        "in_process": lambda batch: run.model.predict_on_batch(run.preprocessor.transform(batch)),
        "in_process_compiled": lambda batch: compiled({k: tf.constant(v) for k, v in batch.items()}),
        "signature_tf2": lambda batch: signature(**{k: tf.constant(v) for k, v in batch.items()}),
        "signature_tf1": lambda batch: session.run(
            fetches, feed_dict={info.inputs[k].name: v for k, v in batch.items()}
        ),
        "client_rest_row": lambda batch: clients["rest_row"].predict(rows(batch)),
        "client_rest_column": lambda batch: clients["rest_column"].predict(rows(batch)),
        "client_grpc": lambda batch: clients["grpc"].predict(rows(batch)),
    }
    return callers, server


def _python(value):
    if isinstance(value, np.ndarray):
        return [_python(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _wait_for(client, server, timeout: float = 120.0) -> None:
    from keras_mtmm.serve.client import ServingError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the stand-in server exited with {server.returncode}")
        try:
            if client.status():
                return
        except ServingError:
            time.sleep(0.5)
    raise SystemExit("the stand-in server did not come up")


def _measure(callers, raw, rounds, latency_calls, throughput_calls, batch_size):
    one = {name: values[:1] for name, values in raw.items()}
    many = {name: values[:batch_size] for name, values in raw.items()}
    for call in callers.values():  # warm up: tracing, first session runs, connections
        for _ in range(3):
            call(one)
            call(many)
    samples = {path: {"latency_s": [], "throughput_s": []} for path in callers}
    for _ in range(rounds):
        for path, call in callers.items():
            for _ in range(latency_calls):
                started = time.perf_counter()
                call(one)
                samples[path]["latency_s"].append(time.perf_counter() - started)
            started = time.perf_counter()
            for _ in range(throughput_calls):
                call(many)
            samples[path]["throughput_s"].append((time.perf_counter() - started) / throughput_calls)
    return samples


def _check_agreement(callers, raw) -> None:
    """Every path must give the same answers (else the timings compare different work)."""
    batch = {name: values[:8] for name, values in raw.items()}
    reference = {k: np.asarray(v) for k, v in callers["in_process"](batch).items()}
    for path, call in callers.items():
        answer = call(batch)
        for task, value in reference.items():
            np.testing.assert_allclose(np.asarray(answer[task]), value, rtol=1e-4, atol=1e-5, err_msg=path)


def _summarise(samples, batch_size):
    figures = {}
    for path, values in samples.items():
        latency = np.asarray(values["latency_s"]) * 1000
        per_batch = statistics.median(values["throughput_s"])
        figures[path] = {
            "latency_p50_ms": float(np.percentile(latency, 50)),
            "latency_p99_ms": float(np.percentile(latency, 99)),
            "latency_calls": int(latency.size),
            "throughput_examples_per_s": batch_size / per_batch,
        }
    base = figures["in_process"]
    for entry in figures.values():
        entry["latency_p50_vs_in_process"] = entry["latency_p50_ms"] / base["latency_p50_ms"]
        entry["throughput_vs_in_process"] = entry["throughput_examples_per_s"] / base["throughput_examples_per_s"]
    return figures


def _table(figures, batch_size) -> str:
    lines = [
        f"{'path':<20} {'p50 ms':>8} {'p99 ms':>8} {'× p50':>7} {f'ex/s @{batch_size}':>11} {'× ex/s':>7}",
    ]
    for path, entry in figures.items():
        lines.append(
            f"{path:<20} {entry['latency_p50_ms']:8.2f} {entry['latency_p99_ms']:8.2f} "
            f"{entry['latency_p50_vs_in_process']:7.2f} {entry['throughput_examples_per_s']:11.0f} "
            f"{entry['throughput_vs_in_process']:7.2f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
