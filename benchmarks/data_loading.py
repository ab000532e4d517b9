"""How fast is a data file read and checked? keras_mtmm's CSV and Parquet readers vs `pandas.read_csv`.

One file of `--rows` rows × `--columns` numeric columns (float32 values
written as text, 1% empty) plus a label column is read, interleaved, by:

- `keras_mtmm csv`: the CSV source as training reads it
  (`keras_mtmm.data.csv_reader.read_csv_table`: pyarrow's reader, every
  check: UTF-8, quoting, cell count, numbers, finite float32, line numbers);
- `keras_mtmm csv, python path`: the same with the csv-module reader the fast
  path falls back to (`--python-rows` rows only, scaled to the file: it is
  slow);
- `pandas.read_csv` (its default C engine) on the same file: the reference;
- `keras_mtmm parquet`: the same rows as a Parquet file (the Parquet source).

Each reader runs `--repeats` times, in turn; the medians are compared as
ratios to pandas. The issue's target: keras_mtmm's CSV load + check within
1.5× of pandas (ratio ≤ 1.5).

    python benchmarks/data_loading.py            # 100k rows × 100 columns (~2 min on 2 cores)
    python benchmarks/data_loading.py --quick    # 5k rows × 20 columns: checks the script works

Writes benchmarks/results/data_loading.json (the medians, every repeat, the
ratios, the file sizes, the machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from machine import describe, machine_info, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "data_loading.json"
TARGET = 1.5


def write_files(folder: Path, rows: int, columns: int, seed: int = 0) -> tuple[Path, Path]:
    """The CSV (float32 values as their shortest text, 1% empty cells) and the same rows as Parquet."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, columns)).astype(np.float32)
    values[rng.random(size=values.shape) < 0.01] = np.nan
    table = pa.table(
        {**{f"x{i}": pa.array(values[:, i], pa.float32()) for i in range(columns)}, "y": rng.normal(size=rows)}
    )
    csv_path, parquet_path = folder / "numbers.csv", folder / "numbers.parquet"
    pacsv.write_csv(table, csv_path)  # nulls as empty cells, float32 as its shortest text
    pq.write_table(table, parquet_path)
    return csv_path, parquet_path


def experiment(columns: int) -> SimpleNamespace:
    """The parts of a config the readers use: one numeric modality of every column, one regression task."""
    from keras_mtmm.config.data import DataConfig

    modality = SimpleNamespace(type="numeric", columns=[f"x{i}" for i in range(columns)])
    return SimpleNamespace(
        data=DataConfig(source="csv"), modalities={"numbers": modality}, tasks={"y": SimpleNamespace(label="y")}
    )


def readers(csv_path: Path, parquet_path: Path, python_path: Path, columns: int) -> dict:
    import pandas

    from keras_mtmm.data.csv_reader import read_csv_table
    from keras_mtmm.data.parquet import read_parquet_table

    config = experiment(columns)
    args = (config.data, config.modalities, config.tasks)
    return {
        "keras_mtmm csv": lambda: read_csv_table(csv_path, *args),
        "pandas.read_csv": lambda: pandas.read_csv(csv_path),
        "keras_mtmm parquet": lambda: read_parquet_table(parquet_path, *args),
        "keras_mtmm csv, python path": lambda: read_csv_table(python_path, *args, fast=False),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--columns", type=int, default=100)
    parser.add_argument("--python-rows", type=int, default=10_000, help="rows of the python-path file")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="5k rows × 20 columns, 2 repeats")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.columns, args.python_rows, args.repeats = 5_000, 20, 1_000, 2
    info = machine_info()
    print(describe(info))
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        csv_path, parquet_path = write_files(folder, args.rows, args.columns)
        (folder / "small").mkdir()
        python_path, _ = write_files(folder / "small", min(args.python_rows, args.rows), args.columns)
        timed = readers(csv_path, parquet_path, python_path, args.columns)
        seconds: dict[str, list[float]] = {name: [] for name in timed}
        for _ in range(args.repeats):
            for name, read in timed.items():
                started = time.perf_counter()
                read()
                seconds[name].append(time.perf_counter() - started)
        sizes = {"csv_bytes": csv_path.stat().st_size, "parquet_bytes": parquet_path.stat().st_size}
    scale = args.rows / min(args.python_rows, args.rows)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    medians["keras_mtmm csv, python path"] *= scale  # per file of --rows rows
    reference = medians["pandas.read_csv"]
    ratios = {name: value / reference for name, value in medians.items()}
    print(f"{args.rows:,} rows × {args.columns} numeric columns + 1 label, CSV {sizes['csv_bytes'] / 1e6:.1f} MB")
    print(f"{'reader':32s} {'median s':>9s} {'× pandas':>9s}")
    for name in timed:
        print(f"{name:32s} {medians[name]:9.3f} {ratios[name]:9.2f}")
    met = ratios["keras_mtmm csv"] <= TARGET
    print(f"target: keras_mtmm csv within {TARGET}× of pandas.read_csv: {'met' if met else 'NOT met'}")
    write_json(
        args.output,
        {
            "machine": info,
            "parameters": vars(args) | {"output": str(args.output)},
            "file": sizes,
            "seconds": seconds,
            "median_s": medians,
            "ratio_to_pandas": ratios,
            "python_path_scaled_from_rows": min(args.python_rows, args.rows),
            "target": {"ratio_at_most": TARGET, "met": met},
        },
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
