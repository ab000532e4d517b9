"""`mtmm demo-data --out DIR`: the built-in demo as CSV files, PNG images and a config that trains on them."""

from __future__ import annotations

import argparse
from pathlib import Path

from keras_mtmm.config.loading import load_config
from keras_mtmm.data.demo_files import held_out_seed, write_demo_files
from keras_mtmm.errors import ConfigError


def add_demo_data_parser(commands, demo_config: Path) -> argparse.ArgumentParser:
    """Add the `demo-data` subcommand to `commands` (the parser's subparsers); `demo_config`: configs/demo.yaml."""
    parser = commands.add_parser(
        "demo-data",
        help="write the built-in demo as files: demo.csv + images, held_out.csv, new.csv and demo.yaml",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder for the files")
    parser.add_argument("--rows", type=int, default=None, help="rows of demo.csv (default: the demo's 4000)")
    parser.add_argument("--seed", type=int, default=None, help="the data's and the config's seed (default: the demo's)")
    parser.add_argument(
        "--held-out-rows",
        type=int,
        default=None,
        help="rows of held_out.csv and new.csv (default: a quarter of --rows)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the demo files in a folder that has them")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.set_defaults(handler=demo_data_command, demo_config=demo_config)
    return parser


def demo_data_command(args) -> int:
    if not args.demo_config.exists():
        raise ConfigError("demo-data", "the built-in demo config is not installed here", "run it from a checkout")
    demo = load_config(args.demo_config)
    rows = demo.data.num_examples if args.rows is None else args.rows
    seed = demo.seed if args.seed is None else args.seed
    held_out_rows = max(1, rows // 4) if args.held_out_rows is None else args.held_out_rows
    sides = [max(m.image_size) for m in demo.modalities.values() if m.type == "image"]
    config = write_demo_files(
        args.out,
        rows,
        seed,
        held_out_rows,
        args.demo_config.read_text(encoding="utf-8"),
        image_size=max([16, *sides]),
        validation_fraction=demo.data.validation_fraction,
        test_fraction=demo.data.test_fraction,
        overwrite=args.overwrite,
    )
    folder = Path(args.out)
    print(
        f"wrote {folder}: demo.csv ({rows} rows, seed {seed}), held_out.csv ({held_out_rows} other rows, "
        f"seed {held_out_seed(seed)}), new.csv (held_out.csv without labels), images/, demo.yaml"
    )
    print(f"train on it: python train.py --config {config}")
    print(f"then: python evaluate.py --model saved_models/demo/<version> --data {folder / 'held_out.csv'}")
    return 0
