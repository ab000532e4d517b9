"""`mtmm train|evaluate|tune|inspect|export|predict|serve|...`: the command line (train.py and evaluate.py call it too).

User mistakes (bad config, data or flags) end with exit status 2 and one
line on stderr, `error: <where>: <what>; <fix>`; `--debug` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from keras_mtmm.cli.demo_data import add_demo_data_parser
from keras_mtmm.cli.inspect import inspect_command
from keras_mtmm.cli.notes import report_after
from keras_mtmm.cli.tune import add_tune_parser
from keras_mtmm.config.loading import load_config
from keras_mtmm.data.tables import load_splits
from keras_mtmm.data.tfrecord import prepare, read_schema
from keras_mtmm.disk_space import disk_full_line
from keras_mtmm.errors import ConfigError, UserError, one_line
from keras_mtmm.evaluation.baselines import compare_with_baselines
from keras_mtmm.evaluation.evaluate import evaluate_model
from keras_mtmm.evaluation.scoring import write_report
from keras_mtmm.evaluation.transfer import format_comparison
from keras_mtmm.export.repository import set_label
from keras_mtmm.export.saved_model import export_run
from keras_mtmm.report.build import build_report
from keras_mtmm.report.tuning import build_tuning_report
from keras_mtmm.run_folder import RunFolder
from keras_mtmm.serve.batch_predict import predict_file
from keras_mtmm.serve.server import serve
from keras_mtmm.tf_start import quiet_tensorflow_start
from keras_mtmm.training.baselines import seed_list, train_baselines, train_other_seeds
from keras_mtmm.training.launch import launch
from keras_mtmm.training.run import train
from keras_mtmm.training.tune_records import TRIALS

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
# `mtmm inspect` averages gates and modality weights over at most this many rows of the split.


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for all subcommands (built per call: no module-level state)."""
    parser = argparse.ArgumentParser(
        prog="mtmm", description="Multi-task, multi-modal Keras models, served by TF Serving."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train, evaluate and export an experiment")
    _add_config_flags(train, f"experiment YAML (default: {DEFAULT_CONFIG.name}, the built-in demo)")
    train.add_argument(
        "--output-dir", default=None, help="run folder (default: training.output_dir/<name>); reuse it to resume"
    )
    train.add_argument("--export-dir", default=None, help="model repository root (default: export.dir)")
    train.add_argument("--no-export", action="store_true", help="do not write a SavedModel")
    train.add_argument("--overwrite", action="store_true", help="replace a finished run in the run folder")
    train.add_argument(
        "--label", action="append", default=[], help="TF Serving version label for the new export (repeatable)"
    )
    train.add_argument("--keep", type=int, default=None, help="keep only the newest N versions (labelled ones stay)")
    train.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    train.add_argument("--no-report", action="store_true", help="do not build the HTML run report at the end")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="per-task metrics of an export or .keras model on a data split")
    evaluate.add_argument("--model", required=True, help="an exported version folder or a run folder's .keras file")
    _add_config_flags(evaluate, "experiment YAML (default: the one stored with the model)")
    evaluate.add_argument("--split", default=None, help="train, validation or test (default: test)")
    evaluate.add_argument(
        "--data", default=None, metavar="FILE", help="score every row of this labelled CSV file instead of a split"
    )
    evaluate.add_argument("--output", default=None, help="write the metrics JSON here")
    evaluate.add_argument("--batch-size", type=int, default=256, help="examples per prediction call")
    evaluate.add_argument("--baselines", default=None, help="folder of single-task runs (mtmm baselines): adds Δm")
    evaluate.add_argument("--delta-m-form", default="libmtl", help="libmtl (higher is better, default) or flat")
    evaluate.add_argument(
        "--robustness", action="store_true", help="also score with each modality removed in turn (missing at serving)"
    )
    evaluate.set_defaults(handler=_evaluate)

    baselines = commands.add_parser("baselines", help="train one single-task model per task (for Δm)")
    _add_config_flags(baselines, "experiment YAML (default: the built-in demo)")
    baselines.add_argument(
        "--output-dir", default=None, help="where the runs go (default: training.output_dir/<name>/baselines)"
    )
    baselines.add_argument("--seeds", type=int, default=1, metavar="N", help="N seeds (<dir>/seed-<s>/<task>/)")
    baselines.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    baselines.add_argument("--overwrite", action="store_true", help="replace finished baseline runs in the folder")
    baselines.set_defaults(handler=_baselines)

    inspect = commands.add_parser(
        "inspect", help="an export's serving signature; or a .keras model's gates and mixing weights on a split"
    )
    inspect.add_argument("--model", required=True, help="an exported version folder, or a run folder's best.keras")
    inspect.add_argument("--split", default="validation", help="split for gate statistics (default: validation)")
    inspect.add_argument("--output", default=None, help="write the gate/mixing summary as JSON here")
    inspect.add_argument(
        "--requests", action="store_true", help="print a ready-to-send REST body, curl command and gRPC call"
    )
    inspect.add_argument("--signature", default="serving_default", help="signature for --requests")
    inspect.add_argument("--host", default="localhost", help="server host for --requests (default: localhost)")
    inspect.add_argument("--rest-port", type=int, default=8501, help="REST port for --requests (default: 8501)")
    inspect.add_argument("--grpc-port", type=int, default=8500, help="gRPC port for --requests (default: 8500)")
    inspect.set_defaults(handler=inspect_command)

    prepare = commands.add_parser(
        "prepare", help="convert the configured csv/demo data into sharded TFRecords + schema (data.source: tfrecord)"
    )
    _add_config_flags(prepare, "experiment YAML whose data to convert (default: the built-in demo)")
    prepare.add_argument("--out", required=True, help="the new folder for the shards and schema.json")
    prepare.add_argument("--shards", type=int, default=4, help="TFRecord files per split (default: 4)")
    prepare.set_defaults(handler=_prepare)

    train.add_argument(
        "--single-task-baselines", action="store_true", help="also train one model per task and report Δm"
    )
    seeds_help = "N seeds: the config's and the N-1 after it (others in <run>/seeds/); Δm as mean ± std"
    train.add_argument("--seeds", type=int, default=1, metavar="N", help=seeds_help)
    export = commands.add_parser("export", help="export a finished run folder's checkpoint as a new SavedModel version")
    export.add_argument("--run", required=True, help="the run folder (holds best.keras, config.yaml, preprocessor/)")
    export.add_argument("--export-dir", default=None, help="model repository root (default: the run's export.dir)")
    export.add_argument("--version", type=int, default=None, help="version number (default: the next free one)")
    export.add_argument(
        "--label", action="append", default=[], help="TF Serving version label for the new version (repeatable)"
    )
    export.add_argument("--keep", type=int, default=None, help="keep only the newest N versions (labelled ones stay)")
    export.add_argument("--checkpoint", default=RunFolder.BEST, help="checkpoint file in the run folder")
    export.set_defaults(handler=_export)

    label = commands.add_parser("label", help="point a TF Serving version label at a version (models.config)")
    label.add_argument("name", help="the model name (its folder under the export dir)")
    label.add_argument("version", type=int, help="an existing version number")
    label.add_argument("label", help="the label, e.g. stable or canary ([A-Za-z0-9_]+)")
    label.add_argument("--export-dir", default="saved_models", help="the model repository root (default: saved_models)")
    label.set_defaults(handler=_label)

    predict = commands.add_parser("predict", help="score a CSV or JSON-lines file with an export (no server)")
    predict.add_argument("--model", required=True, help="an exported version folder, e.g. saved_models/demo/3")
    predict.add_argument("--input", required=True, help="rows to score: .csv (header row) or .jsonl")
    predict.add_argument("--output", required=True, help="the predictions file: .csv or .jsonl")
    predict.add_argument("--batch-size", type=int, default=256, help="rows read and scored at a time (default: 256)")
    predict.add_argument("--id-column", default=None, help="input column copied to the output (default: row index)")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(handler=_predict)

    serve = commands.add_parser("serve", help="run TF Serving on the model repository (or print the docker command)")
    serve.add_argument("--export-dir", default="saved_models", help="the model repository root (default: saved_models)")
    serve.add_argument("--port", type=int, default=8500, help="gRPC port (default: 8500)")
    serve.add_argument("--rest-port", type=int, default=8501, help="REST port (default: 8501)")
    serve.add_argument("--no-batching", action="store_true", help="serve without --enable_batching")
    serve.add_argument(
        "--poll-seconds", type=int, default=30, help="re-read models.config this often (default: 30; 0: never)"
    )
    serve.add_argument("--dry-run", action="store_true", help="print the server command and start nothing")
    serve.add_argument("--docker-image", default="tensorflow/serving", help="image for the printed docker command")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address the docker command publishes the ports on (default: 127.0.0.1, this machine only; "
        "0.0.0.0: every interface)",
    )
    serve.set_defaults(handler=_serve)

    launch = commands.add_parser(
        "launch",
        help="run N local copies of a command as one tf.distribute cluster (a TF_CONFIG each)",
        usage="mtmm launch --workers N [--port-base P] [--timeout S] -- COMMAND ...",
    )
    launch.add_argument("--workers", type=int, required=True, metavar="N", help="number of workers (worker 0: chief)")
    launch.add_argument(
        "--port-base", type=int, default=None, metavar="P", help="use ports P, P+1, ... (default: free ones)"
    )
    launch.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="stop all workers after S seconds (exit 124)"
    )
    launch.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND", help="what each worker runs, after --")
    launch.set_defaults(handler=_launch)

    report = commands.add_parser(
        "report", help="one self-contained HTML page (curves, weights, gates, transfer, evaluation) of a run folder"
    )
    report.add_argument(
        "run_dir", metavar="RUN_DIR", help="the run folder train.py wrote, e.g. runs/demo (or a tune folder)"
    )
    report.add_argument(
        "--baselines", default=None, metavar="DIR", help="single-task runs (<DIR>/<task>/metrics.json) to compare with"
    )
    report.add_argument(
        "--out", default=None, metavar="FILE", help="HTML file (default: RUN_DIR/report/report.html; PNGs beside it)"
    )
    report.set_defaults(handler=_report)
    add_demo_data_parser(commands, DEFAULT_CONFIG)  # (with its own --debug)
    add_tune_parser(commands, DEFAULT_CONFIG)  # (with its own --debug)

    for command in (train, evaluate, baselines, inspect, prepare, label, export, predict, serve, launch, report):
        command.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return parser


def _add_config_flags(parser: argparse.ArgumentParser, config_help: str) -> None:
    parser.add_argument("--config", default=None, help=config_help)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. training.epochs=1 (repeatable)",
    )


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the exit status."""
    args = build_parser().parse_args(argv)
    # TF 2.21 logs harmless C++ errors on CPU machines (cuInit, a tf.data attribute under
    # op determinism); real problems still surface as Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    quiet_tensorflow_start()

    try:
        return args.handler(args) or 0
    except UserError as error:
        if args.debug:
            raise
        print(f"error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `... | head` closed stdout: stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as error:  # a full disk is the user's to fix, wherever a write hit it
        line = disk_full_line(error)
        if line is None or args.debug:
            raise
        print(f"error: {one_line(line)}", file=sys.stderr)
        return 2


def _load(args):
    config_path = Path(args.config) if args.config else DEFAULT_CONFIG
    if args.config is None and not config_path.exists():
        raise ConfigError("--config", "the built-in demo config is not installed here", "pass --config PATH")
    return load_config(config_path, args.overrides)


def _verbosity(args):
    return 0 if args.quiet else ("auto" if sys.stdout.isatty() else 2)


def _train(args) -> int:
    config = _load(args)
    seeds = seed_list(config, args.seeds)
    result = train(
        config,
        output_dir=args.output_dir,
        export_dir=args.export_dir,
        export=not args.no_export,
        verbose=_verbosity(args),
        labels=args.label,
        keep=args.keep,
        overwrite=args.overwrite,
    )
    train_other_seeds(config, result.run_dir, seeds[1:], verbose=_verbosity(args))
    if args.single_task_baselines:
        folder = result.run_dir / RunFolder.BASELINES
        train_baselines(config, folder, verbose=_verbosity(args), seeds=seeds, overwrite=args.overwrite)
        if result.metrics is not None:
            test_table = load_splits(config)["test"]
            transfer = compare_with_baselines(
                result.metrics, folder, test_table, "test", 256, "libmtl", result.run_dir / RunFolder.BEST, config
            )
            write_report(transfer, result.run_dir / RunFolder.TRANSFER)
            print(format_comparison(transfer))
    if not args.no_report and result.chief:
        report_after("run report", build_report, result.run_dir)
    return 0


def _report(args) -> int:
    if (Path(args.run_dir) / TRIALS).is_file():  # a search's tune folder
        print(f"tuning report: {build_tuning_report(args.run_dir)}")
        return 0
    print(f"run report: {build_report(args.run_dir, baselines=args.baselines, out=args.out)}")
    return 0


def _export(args) -> int:
    path = export_run(args.run, args.export_dir, args.version, args.label, args.keep, args.checkpoint)
    print(f"exported for TF Serving: {path}")
    return 0


def _label(args) -> int:
    path = set_label(args.export_dir, args.name, args.version, args.label)
    print(f"{args.name}: label {args.label} -> version {args.version} ({path})")
    return 0


def _predict(args) -> int:
    summary = predict_file(
        args.model, args.input, args.output, batch_size=args.batch_size, id_column=args.id_column, quiet=args.quiet
    )
    print(summary.line())
    return 0


def _serve(args) -> int:
    return serve(
        args.export_dir,
        port=args.port,
        rest_port=args.rest_port,
        batching=not args.no_batching,
        poll_seconds=args.poll_seconds,
        dry_run=args.dry_run,
        docker_image=args.docker_image,
        host=args.host,
    )


def _launch(args) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command  # argparse keeps the `--`
    return launch(command, args.workers, port_base=args.port_base, timeout=args.timeout)


def _prepare(args) -> int:
    import time

    config = _load(args)
    started = time.perf_counter()
    folder = prepare(config, args.out, args.shards)
    schema = read_schema(folder)
    rows = ", ".join(f"{split}={entry['rows']}" for split, entry in schema["splits"].items())
    print(f"prepared {folder} in {time.perf_counter() - started:.1f} s: {rows}")
    print(f"train from it with: python train.py --config ... --set data.source=tfrecord --set data.path={folder}")
    return 0


def _baselines(args) -> int:
    config = _load(args)
    seeds = seed_list(config, args.seeds)
    run_dir = Path(config.training.output_dir) / config.name
    folder = Path(args.output_dir) if args.output_dir else run_dir / RunFolder.BASELINES
    train_baselines(config, folder, verbose=_verbosity(args), seeds=seeds, overwrite=args.overwrite)
    print(f"single-task baselines in {folder}; compare with: python evaluate.py --model MODEL --baselines {folder}")
    return 0


def _evaluate(args) -> int:
    if args.batch_size < 1:
        raise UserError("--batch-size", f"expected a positive integer, got {args.batch_size}", "e.g. --batch-size 256")
    evaluate_model(
        args.model,
        args.config,
        args.overrides,
        args.split,
        args.output,
        args.batch_size,
        baselines=args.baselines,
        delta_m_form=args.delta_m_form,
        robustness=args.robustness,
        data=args.data,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
