"""`mtmm tune`: search the config's `tune.space` with KerasTuner; print the leaderboard; export the best."""

from __future__ import annotations

from pathlib import Path

from keras_mtmm.cli.notes import report_after
from keras_mtmm.config.loading import apply_overrides, load_raw
from keras_mtmm.errors import ConfigError
from keras_mtmm.export.saved_model import export_run
from keras_mtmm.report.tuning import build_tuning_report
from keras_mtmm.run_folder import RunFolder
from keras_mtmm.training.tune import tune
from keras_mtmm.training.tune_records import BEST, TRIALS, leaderboard


def add_tune_parser(commands, default_config: Path) -> None:
    tune = commands.add_parser(
        "tune",
        help="search the config's tune.space with KerasTuner (resumes; runs as chief or worker under mtmm launch)",
        usage="mtmm tune [--config C.yaml] [--space S.yaml] [--set KEY=VALUE ...] [--export-best] ...",
    )
    tune.add_argument("--config", default=None, help=f"experiment YAML (default: {default_config.name})")
    tune.add_argument("--space", default=None, metavar="S.yaml", help="the tune section in a file of its own")
    tune.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    tune.add_argument("--output-dir", default=None, help="tune folder (default: training.output_dir/<name>/tune)")
    tune.add_argument("--export-best", action="store_true", help="export the best trial as a new SavedModel version")
    tune.add_argument(
        "--export-dir", default=None, help="model repository root for --export-best (default: export.dir)"
    )
    tune.add_argument("--overwrite", action="store_true", help="start the search over (its trials are removed)")
    tune.add_argument("--verbose", action="store_true", help="the trials' per-epoch progress")
    tune.add_argument("--no-report", action="store_true", help="no tune/report.html")
    tune.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    tune.set_defaults(handler=lambda args: tune_command(args, default_config))


def search_raw(config_path: Path, space: str | None, overrides: list[str]) -> dict:
    """The config to search as plain data: the YAML, its `--set` overrides, and `--space` as its tune section."""
    raw = load_raw(config_path)
    if space is not None:
        section = load_raw(space, "search space", "--space")
        raw["tune"] = section["tune"] if set(section) == {"tune"} else section
    raw = apply_overrides(raw, overrides)  # (after --space: `--set tune.max_trials=N` changes either)
    if raw.get("tune") is None:
        raise ConfigError("tune", "the config has no tune section", "add tune: {space: ...} or pass --space S.yaml")
    return raw


def tune_command(args, default_config: Path) -> int:
    raw = search_raw(Path(args.config) if args.config else default_config, args.space, args.overrides)
    result = tune(raw, args.output_dir, overwrite=args.overwrite, verbose=2 if args.verbose else 0)
    folder = result.folder
    if result.role not in (None, "chief"):
        print(f"{result.role}: no more trials; the chief writes {folder / TRIALS}")
        return 0
    print(leaderboard(result.trials))
    print(f"trials: {folder / TRIALS}")
    if result.trials and result.trials[0]["status"] == "COMPLETED":
        print(f"best: trial {result.trials[0]['trial']}, {folder / BEST}")
        if args.export_best:
            path = export_run(folder / result.trials[0]["run"], args.export_dir, checkpoint=RunFolder.BEST)
            print(f"exported for TF Serving: {path}")
    else:
        print("warning: no trial finished; see each trial's trial.json")
    if not args.no_report:
        report_after("tuning report", build_tuning_report, folder)
    return 0
