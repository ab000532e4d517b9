"""The built-in demo written out as files (`mtmm demo-data`): CSVs, one PNG per row, and a config that trains on them.

A folder written by `write_demo_files(folder, rows, seed)` holds:

- `demo.csv`: `generate_demo(rows, seed)`, one row per example, its images in
  `images/demo/<row>.png` (paths relative to the CSV, rows counted from 0).
- `held_out.csv`: `held_out_rows` more rows, drawn with `held_out_seed(seed)`
  (never `seed + k` for a small k, so no `--seeds N` run of the demo trains on
  them), images in `images/held_out/`: for `evaluate.py --data`.
- `new.csv`: the held-out rows without their label columns, what a client
  sends: for `mtmm predict`.
- `demo.yaml`: the demo config (`configs/demo.yaml`, comments kept) with
  `seed: <seed>` and `data: {source: csv, path: demo.csv}` and the demo's split
  fractions, so it trains on the same rows, split the same way, as the built-in
  demo of that seed and size.

Numbers are written as the shortest text that reads back as the same float32
(checked; otherwise the float32's exact decimal value). A missing value (a NaN
weight or price, an empty description, region or shape label) is an empty cell.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from keras_mtmm.data.demo import DEMO_COLUMNS, generate_demo
from keras_mtmm.errors import UserError

# The entries of a demo-data folder; `--overwrite` replaces these and leaves anything else in the folder.
DEMO_ENTRIES = ("demo.csv", "held_out.csv", "new.csv", "demo.yaml", "images")
FEATURE_COLUMNS = tuple(name for name, kind in DEMO_COLUMNS.items() if kind != "label")


def held_out_seed(seed: int) -> int:
    """The seed of the held-out rows: derived from `seed`, far from `seed + k` for any small k."""
    return int(np.random.SeedSequence([int(seed), 1]).generate_state(1)[0])


def float32_text(value) -> str:
    """The shortest text that reads back (via float64, as the CSV source reads) as the same float32; NaN: ""."""
    value = np.float32(value)
    if np.isnan(value):
        return ""
    text = str(value)
    if np.float32(np.float64(text)) == value:
        return text
    return repr(float(value))  # the float32's exact value: always reads back exactly


def write_demo_csv(path: Path, table: dict[str, np.ndarray], images: str, columns=tuple(DEMO_COLUMNS)) -> None:
    """`table` (a demo table) as a CSV of `columns`; each image as `<images>/<row>.png` beside it."""
    folder = path.parent / images
    folder.mkdir(parents=True, exist_ok=True)
    rows = len(table["image"])
    width = max(6, len(str(rows - 1)))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in range(rows):
            cells = []
            for name in columns:
                value = table[name][row]
                if DEMO_COLUMNS[name] == "image":
                    cell = ""
                    if value:
                        cell = f"{images}/{row:0{width}d}.png"
                        (path.parent / cell).write_bytes(value)
                elif table[name].dtype.kind == "f":
                    cell = float32_text(value)
                else:
                    cell = str(value)
                cells.append(cell)
            writer.writerow(cells)


def demo_config_text(template: str, seed: int, validation_fraction: float, test_fraction: float) -> str:
    """The demo config's YAML with its `seed` and `data` block replaced: the demo files, split as the demo."""
    lines = template.splitlines()
    data_block = [
        "data:",
        "  source: csv           # written by `mtmm demo-data`; paths are relative to this file",
        "  path: demo.csv        # image cells: images/demo/<row>.png, relative to the CSV",
        f"  validation_fraction: {validation_fraction}",
        f"  test_fraction: {test_fraction}",
        "  # held_out.csv (other rows, labelled): evaluate.py --data; new.csv (the same rows, no labels): mtmm predict",
    ]
    starts = [i for i, line in enumerate(lines) if line.rstrip() == "data:"]
    seeds = [i for i, line in enumerate(lines) if line.startswith("seed:")]
    if len(starts) != 1 or len(seeds) != 1:
        raise ValueError("the demo config has no single top-level `seed:` and `data:` block to replace")
    start = starts[0]
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith((" ", "#"))):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():  # keep the blank line before the next block
        end -= 1
    lines[seeds[0]] = f"seed: {seed}"
    return "\n".join([*lines[:start], *data_block, *lines[end:]]) + "\n"


def write_demo_files(
    folder: str | Path,
    rows: int,
    seed: int,
    held_out_rows: int,
    config_template: str,
    image_size: int = 32,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    overwrite: bool = False,
) -> Path:
    """Write the demo as files into `folder` (see the module docstring); return the config's path.

    The files are written into a new folder beside `folder` and moved into place when complete.
    A non-empty `folder` is refused unless `overwrite`, which replaces `DEMO_ENTRIES` there (and
    nothing else).

    Raises:
        UserError: a bad count or seed, or a `folder` that is a file or holds files (without `overwrite`).
    """
    for flag, value, least in (("--rows", rows, 1), ("--held-out-rows", held_out_rows, 1), ("--seed", seed, 0)):
        if not isinstance(value, int) or value < least:
            raise UserError(flag, f"expected an integer >= {least}, got {value!r}", f"e.g. {flag} {max(least, 200)}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError("--out", f"'{folder}' is a file", "name a new or empty folder")
    existing = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if existing and not overwrite:
        shown = ", ".join(existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise UserError(
            "--out",
            f"'{folder}' is not empty ({len(existing)} entries: {shown})",
            "name a new or empty folder, or pass --overwrite to replace the demo files in it "
            f"({', '.join(DEMO_ENTRIES)}; nothing else is touched)",
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        write_demo_csv(staging / "demo.csv", generate_demo(rows, seed, image_size), "images/demo")
        held_out = generate_demo(held_out_rows, held_out_seed(seed), image_size)
        write_demo_csv(staging / "held_out.csv", held_out, "images/held_out")
        write_demo_csv(staging / "new.csv", held_out, "images/held_out", FEATURE_COLUMNS)
        config = demo_config_text(config_template, seed, validation_fraction, test_fraction)
        (staging / "demo.yaml").write_text(config, encoding="utf-8")
        _move_into_place(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder / "demo.yaml"


def _move_into_place(staging: Path, folder: Path) -> None:
    """Move the written folder to `folder`: whole where that is new or empty, else entry by entry."""
    if not folder.exists() or not any(folder.iterdir()):
        if folder.exists():
            folder.rmdir()
        os.rename(staging, folder)
        staging.mkdir()  # (the caller removes it)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
    try:
        for name in DEMO_ENTRIES:
            target = folder / name
            if target.is_symlink() or target.exists():
                os.rename(target, old / name)  # a symlink moves as a link: what it points at stays
            os.rename(staging / name, target)
    finally:
        shutil.rmtree(old, ignore_errors=True)
