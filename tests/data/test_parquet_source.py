"""The Parquet source (keras_mtmm.data.parquet): the CSV source's columns, read from Parquet, image bytes included."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.data.demo import encode_png
from keras_mtmm.data.manifest import split_manifest
from keras_mtmm.data.sources import load_file_source
from keras_mtmm.data.tables import load_splits
from keras_mtmm.errors import DataError
from tests.data.test_csv_source import EMPTY_IMAGE_ROW, NUM_ROWS, _raw_config, dataset  # noqa: F401 (a fixture)


def _csv_as_parquet(csv_path: Path, target: Path, images: str = "paths", row_group_size: int | None = None) -> Path:
    """The CSV's rows as a Parquet file with typed columns: numbers as float64/int64 (empty: null),
    strings as strings, the image column as paths (relative to `target`'s folder) or as the bytes."""
    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = {}
    for name in rows[0]:
        cells = [row[name] for row in rows]
        if name in ("weight", "price"):
            columns[name] = pa.array([float(c) if c else None for c in cells], pa.float64())
        elif name == "height":
            columns[name] = pa.array([int(c) for c in cells], pa.int64())
        elif name == "image" and images == "bytes":
            columns[name] = pa.array([(csv_path.parent / c).read_bytes() if c else None for c in cells], pa.binary())
        else:
            columns[name] = pa.array(cells, pa.string())
    pq.write_table(pa.table(columns), target, row_group_size=row_group_size)
    return target


def _load(path: Path, **data):
    raw = _raw_config(path, **data)
    raw["data"]["source"] = "parquet"
    config = config_from_dict(raw)
    return load_file_source(config.data, config.modalities, config.tasks, config.seed, Path("/nonexistent"))


def _csv(path: Path):
    config = config_from_dict(_raw_config(path))
    return load_file_source(config.data, config.modalities, config.tasks, config.seed, Path("/nonexistent"))


@pytest.mark.parametrize("images", ["paths", "bytes"])
def test_parquet_reads_the_table_the_csv_reads(dataset, images):  # noqa: F811
    csv_path, pngs = dataset
    from_csv = _csv(csv_path)
    from_parquet = _load(_csv_as_parquet(csv_path, csv_path.with_suffix(".parquet"), images))
    assert set(from_parquet) == set(from_csv)
    for name in from_csv:
        if from_csv[name].dtype == np.float32:
            np.testing.assert_array_equal(from_parquet[name], from_csv[name])
        elif from_parquet[name].dtype.kind == "f":  # a float label: the number the CSV's text says
            expected = np.asarray([cell or "nan" for cell in from_csv[name]], dtype=np.float64)
            np.testing.assert_array_equal(from_parquet[name], expected)
        else:
            assert list(from_parquet[name]) == list(from_csv[name]), name
    assert from_parquet["image"][EMPTY_IMAGE_ROW] == b"" and from_parquet["image"][1] == pngs[1]
    np.testing.assert_array_equal(from_parquet.rows, np.arange(NUM_ROWS))
    assert from_parquet.row_ids == "index"
    assert from_parquet.where(3) == f"{csv_path.with_suffix('.parquet')}: row index 3"


def test_a_file_named_parquet_is_read_as_parquet_whatever_the_source(dataset):  # noqa: F811
    csv_path, _ = dataset
    target = _csv_as_parquet(csv_path, csv_path.with_suffix(".parquet"))
    config = config_from_dict(_raw_config(target))  # data.source: csv
    table = load_file_source(config.data, config.modalities, config.tasks, config.seed, Path("/"))
    assert table.row_ids == "index" and len(table["price"]) == NUM_ROWS


def test_messages_name_the_file_the_row_its_row_group_and_the_column(dataset):  # noqa: F811
    csv_path, _ = dataset
    target = _csv_as_parquet(csv_path, csv_path.with_suffix(".parquet"), "bytes", row_group_size=4)
    table = pq.read_table(target)
    images = table.column("image").to_pylist()
    images[5] = b"\x89PNG\r\n\x1a\n not really"
    pq.write_table(table.set_column(table.schema.get_field_index("image"), "image", pa.array(images)), target, 4)
    with pytest.raises(DataError) as error:
        _load(target)
    assert str(error.value).startswith(f"{target}: row index 5 (row group 1, row 1 in it): column 'image': ")
    assert "the cell's bytes is not a readable PNG" in str(error.value)
    skipped = _load(target, on_bad_record="skip")
    assert len(skipped["image"]) == NUM_ROWS - 1 and 5 not in skipped.rows


def test_a_numeric_column_of_text_is_parsed_and_a_bad_cell_named(dataset):  # noqa: F811
    csv_path, _ = dataset
    target = csv_path.with_suffix(".parquet")
    _csv_as_parquet(csv_path, target)
    table = pq.read_table(target)
    heights = [str(v) for v in table.column("height").to_pylist()]
    pq.write_table(table.set_column(table.schema.get_field_index("height"), "height", pa.array(heights)), target)
    np.testing.assert_array_equal(_load(target)["height"], np.arange(10, 10 + NUM_ROWS, dtype=np.float32))
    heights[7] = "tall"
    pq.write_table(table.set_column(table.schema.get_field_index("height"), "height", pa.array(heights)), target)
    with pytest.raises(DataError, match=r": row index 7: column 'height': expected a number, got 'tall'"):
        _load(target)


def test_an_infinite_number_and_an_unreadable_type_are_refused(dataset):  # noqa: F811
    csv_path, _ = dataset
    target = _csv_as_parquet(csv_path, csv_path.with_suffix(".parquet"))
    table = pq.read_table(target)
    weights = table.column("weight").to_pylist()
    weights[2] = float("inf")
    bad = table.set_column(table.schema.get_field_index("weight"), "weight", pa.array(weights))
    pq.write_table(bad, target)
    with pytest.raises(DataError, match=r"row index 2: column 'weight': inf is not a finite number"):
        _load(target)
    listed = table.set_column(
        table.schema.get_field_index("region"), "region", pa.array([[1]] * NUM_ROWS, pa.list_(pa.int64()))
    )
    pq.write_table(listed, target)
    with pytest.raises(DataError, match=r"'region': holds list<.*int64> values, which a categorical column"):
        _load(target)


def test_a_missing_column_and_a_file_that_is_not_parquet_are_named(dataset, tmp_path):  # noqa: F811
    csv_path, _ = dataset
    target = _csv_as_parquet(csv_path, csv_path.with_suffix(".parquet"))
    pq.write_table(pq.read_table(target).drop_columns(["price"]), target)
    with pytest.raises(DataError, match=r"column 'price': is configured but not in the Parquet file"):
        _load(target)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="is not a readable Parquet file"):
        _load(junk)
    with pytest.raises(DataError, match=r"data.path: cannot open Parquet"):
        _load(tmp_path / "absent.parquet")


def test_parquet_split_files_give_their_rows_and_the_manifest_names_row_indices(tmp_path):
    rng = np.random.default_rng(0)
    png = encode_png(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8))
    for name, rows in (("train", 12), ("test", 5)):
        pq.write_table(
            pa.table(
                {
                    "image": pa.array([png] * rows, pa.binary()),
                    "description": [f"row {i}" for i in range(rows)],
                    "weight": rng.normal(size=rows),
                    "height": rng.normal(size=rows),
                    "region": ["north"] * rows,
                    "shape": ["circle", "square"] * (rows // 2) + ["circle"] * (rows % 2),
                    "premium": ["yes", "no"] * (rows // 2) + ["no"] * (rows % 2),
                    "price": rng.normal(size=rows),
                }
            ),
            tmp_path / f"{name}.parquet",
        )
    raw = _raw_config(tmp_path / "unused.csv")
    raw["data"] = {"source": "parquet", "train": "train.parquet", "test": "test.parquet", "validation_fraction": 0.25}
    splits = load_splits(config_from_dict(raw), base_dir=tmp_path)
    assert {name: len(split["price"]) for name, split in splits.items()} == {"train": 9, "validation": 3, "test": 5}
    manifest = split_manifest(splits)
    assert manifest["splits"]["test"] == [
        {"source": str(tmp_path / "test.parquet"), "row_ids": "index", "rows": [0, 1, 2, 3, 4]}
    ]
    train_rows = manifest["splits"]["train"][0]["rows"] + manifest["splits"]["validation"][0]["rows"]
    assert sorted(train_rows) == list(range(12))
