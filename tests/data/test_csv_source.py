"""Tests for the CSV data source (keras_mtmm.data.sources.load_csv) and column tables (keras_mtmm.data.tables)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.data.demo import encode_png
from keras_mtmm.data.sources import load_file_source as load_csv
from keras_mtmm.data.tables import SPLITS, check_columns, load_splits, modality_inputs, split_table
from keras_mtmm.errors import DataError
from keras_mtmm.tasks import get_task_type

HEADER = ["id", "image", "description", "weight", "height", "region", "shape", "premium", "price", "notes"]
SHAPES = ["circle", "square", "triangle"]
NUM_ROWS = 10
EMPTY_IMAGE_ROW = 2
EMPTY_WEIGHT_ROW = 3
EMPTY_SHAPE_ROW = 4
EMPTY_PRICE_ROW = 5
EMPTY_PREMIUM_ROW = 6


def _rows(image_names: list[str]) -> list[list[str]]:
    rows = []
    for i in range(NUM_ROWS):
        rows.append(
            [
                f"item{i}",
                image_names[i],
                f"a small thing number {i}",
                "" if i == EMPTY_WEIGHT_ROW else f"{1.25 * i:.2f}",
                f"{10 + i}",
                ["north", "south", ""][i % 3],
                "" if i == EMPTY_SHAPE_ROW else SHAPES[i % 3],
                "" if i == EMPTY_PREMIUM_ROW else ["no", "yes"][i % 2],
                "" if i == EMPTY_PRICE_ROW else f"{3.5 * i + 1:.1f}",
                "not configured",
            ]
        )
    return rows


def _write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def dataset(tmp_path):
    """A CSV with relative image paths, one empty cell of each kind; returns (csv path, {row: png bytes})."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    names, pngs = [], {}
    for i in range(NUM_ROWS):
        if i == EMPTY_IMAGE_ROW:
            names.append("")
            continue
        pngs[i] = encode_png(rng.integers(0, 256, size=(4 + i, 5, 3), dtype=np.uint8))
        (images / f"item{i}.png").write_bytes(pngs[i])
        names.append(f"images/item{i}.png")
    path = _write_csv(tmp_path / "catalogue.csv", _rows(names))
    return path, pngs


def _raw_config(path, **data):
    return {
        "name": "csv_test",
        "seed": 3,
        "data": {"source": "csv", "path": str(path), "validation_fraction": 0.2, "test_fraction": 0.2, **data},
        "modalities": {
            "photo": {"type": "image", "columns": ["image"], "image_size": [8, 8]},
            "text": {"type": "text", "columns": ["description"]},
            "measures": {"type": "numeric", "columns": ["weight", "height"]},
            "origin": {"type": "categorical", "columns": ["region"]},
        },
        "tasks": {
            "kind": {"type": "multiclass", "label": "shape"},
            "is_premium": {"type": "binary", "label": "premium", "classes": ["no", "yes"]},
            "cost": {"type": "regression", "label": "price"},
        },
    }


def _config(path, **data):
    return config_from_dict(_raw_config(path, **data))


def _load(config, base_dir: Path | None = None):
    return load_csv(config.data, config.modalities, config.tasks, config.seed, base_dir or Path("/nonexistent"))


# ---------------------------------------------------------------------------
# Reading cells


def test_load_csv_reads_configured_columns_only(dataset):
    path, _ = dataset
    table = _load(_config(path))
    expected = {"image", "description", "weight", "height", "region", "shape", "premium", "price"}
    assert set(table) == expected  # "id" and "notes" are not configured
    assert all(len(values) == NUM_ROWS for values in table.values())


def test_image_cells_are_the_exact_file_bytes(dataset):
    path, pngs = dataset
    table = _load(_config(path))
    for row, png in pngs.items():
        assert table["image"][row] == png
    assert table["image"][EMPTY_IMAGE_ROW] == b""


def test_numeric_cells_are_float32_with_nan_for_empty(dataset):
    path, _ = dataset
    table = _load(_config(path))
    assert table["weight"].dtype == np.float32
    assert math.isnan(table["weight"][EMPTY_WEIGHT_ROW])
    expected = [1.25 * i for i in range(NUM_ROWS) if i != EMPTY_WEIGHT_ROW]
    np.testing.assert_allclose(np.delete(table["weight"], EMPTY_WEIGHT_ROW), expected, rtol=1e-6)
    np.testing.assert_array_equal(table["height"], np.arange(10, 10 + NUM_ROWS, dtype=np.float32))


def test_text_and_categorical_cells_are_strings(dataset):
    path, _ = dataset
    table = _load(_config(path))
    assert table["description"][7] == "a small thing number 7"
    assert list(table["region"][:3]) == ["north", "south", ""]


def test_empty_label_cells_keep_their_row_and_encode_with_mask_zero(dataset):
    path, _ = dataset
    config = _config(path)
    table = _load(config)
    assert table["shape"][EMPTY_SHAPE_ROW] == ""
    assert table["price"][EMPTY_PRICE_ROW] == ""

    multiclass = get_task_type("multiclass")
    classes = multiclass.infer_classes(table["shape"], "|")
    assert classes == SHAPES
    targets, mask = multiclass.encode(table["shape"], classes, "tasks.kind.label", "|")
    assert mask[EMPTY_SHAPE_ROW] == 0 and mask.sum() == NUM_ROWS - 1
    labelled = [i for i in range(NUM_ROWS) if i != EMPTY_SHAPE_ROW]
    np.testing.assert_array_equal(targets[labelled], [i % 3 for i in labelled])

    targets, mask = get_task_type("binary").encode(table["premium"], ["no", "yes"], "tasks.is_premium.label", "|")
    assert mask[EMPTY_PREMIUM_ROW] == 0 and mask.sum() == NUM_ROWS - 1
    labelled = [i for i in range(NUM_ROWS) if i != EMPTY_PREMIUM_ROW]
    np.testing.assert_array_equal(targets[labelled, 0], [i % 2 for i in labelled])

    targets, mask = get_task_type("regression").encode(table["price"], [], "tasks.cost.label", "|")
    assert mask[EMPTY_PRICE_ROW] == 0 and mask.sum() == NUM_ROWS - 1
    labelled = [i for i in range(NUM_ROWS) if i != EMPTY_PRICE_ROW]
    np.testing.assert_allclose(targets[labelled, 0], [3.5 * i + 1 for i in labelled], rtol=1e-6)


def test_relative_data_path_is_resolved_against_base_dir(dataset):
    path, pngs = dataset
    table = _load(_config(path.name), base_dir=path.parent)
    assert table["image"][0] == pngs[0]


def test_absolute_image_path_is_read(tmp_path):
    png = encode_png(np.full((3, 3, 3), 200, dtype=np.uint8))
    image = tmp_path / "elsewhere.png"
    image.write_bytes(png)
    rows = _rows([str(image)] * NUM_ROWS)
    path = _write_csv(tmp_path / "data.csv", rows)
    table = _load(_config(path))
    assert all(cell == png for cell in table["image"])


def test_blank_lines_are_skipped_and_later_errors_keep_their_line_number(dataset):
    path, _ = dataset
    lines = path.read_text(encoding="utf-8").splitlines()
    # a blank line after the first data row; the third data row (now file line 5) gets a bad weight
    cells = next(csv.reader([lines[3]]))
    cells[HEADER.index("weight")] = "oops"
    bad_row = ",".join(cells)
    path.write_text("\n".join([lines[0], lines[1], "", lines[2], bad_row, *lines[4:]]) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as error:
        _load(_config(path))
    assert f"{path}:5" in str(error.value)
    path.write_text("\n".join([lines[0], lines[1], "", *lines[2:]]) + "\n", encoding="utf-8")
    assert len(_load(_config(path))["image"]) == NUM_ROWS


# ---------------------------------------------------------------------------
# Errors


def test_missing_configured_column_names_it_and_lists_csv_columns(dataset):
    path, _ = dataset
    raw = _raw_config(path)
    raw["modalities"]["measures"]["columns"] = ["weight", "colour"]
    with pytest.raises(DataError) as error:
        _load(config_from_dict(raw))
    message = str(error.value)
    assert "'colour'" in message
    assert str(path) in message
    for column in HEADER:
        assert column in message


def test_missing_label_column_is_named(dataset):
    path, _ = dataset
    raw = _raw_config(path)
    raw["tasks"]["cost"]["label"] = "cost_usd"
    with pytest.raises(DataError, match="cost_usd"):
        _load(config_from_dict(raw))


def test_non_numeric_value_names_file_line_and_column(dataset):
    path, _ = dataset
    rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    rows[4][HEADER.index("height")] = "tall"  # data row 4 is file line 5
    _write_csv(path, rows[1:], rows[0])
    with pytest.raises(DataError) as error:
        _load(_config(path))
    message = str(error.value)
    assert f"{path}:5" in message
    assert "'height'" in message
    assert "'tall'" in message


def test_missing_image_file_names_the_file(dataset):
    path, _ = dataset
    rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    rows[2][HEADER.index("image")] = "images/nope.png"
    _write_csv(path, rows[1:], rows[0])
    with pytest.raises(DataError) as error:
        _load(_config(path))
    message = str(error.value)
    assert "nope.png" in message
    assert f"{path}:3" in message
    assert "'image'" in message


def test_file_that_is_not_an_image_is_named(dataset):
    path, _ = dataset
    (path.parent / "images" / "fake.png").write_text("this is text, not a PNG", encoding="utf-8")
    rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    rows[1][HEADER.index("image")] = "images/fake.png"
    _write_csv(path, rows[1:], rows[0])
    with pytest.raises(DataError) as error:
        _load(_config(path))
    message = str(error.value)
    assert "fake.png" in message
    assert "not a readable PNG" in message


def test_truncated_image_with_a_valid_signature_is_named(dataset):
    path, _ = dataset
    good = (path.parent / "images").glob("*.png").__next__().read_bytes()
    (path.parent / "images" / "broken.png").write_bytes(good[: len(good) // 2])
    rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    rows[2][HEADER.index("image")] = "images/broken.png"
    _write_csv(path, rows[1:], rows[0])
    with pytest.raises(DataError) as error:
        _load(_config(path))
    assert "broken.png" in str(error.value)
    assert f"{path}:3" in str(error.value)


def test_row_with_wrong_number_of_cells_names_the_line(dataset):
    path, _ = dataset
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[6] = lines[6] + ",extra"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as error:
        _load(_config(path))
    assert f"{path}:7" in str(error.value)
    assert f"expected {len(HEADER)} cells, got {len(HEADER) + 1}" in str(error.value)


def test_missing_csv_file_names_data_path(tmp_path):
    with pytest.raises(DataError) as error:
        _load(_config(tmp_path / "absent.csv"))
    assert error.value.where == "data.path"
    assert "absent.csv" in str(error.value)


@pytest.mark.parametrize(("text", "what"), [("", "empty"), (",".join(HEADER) + "\n", "no data rows")])
def test_empty_csv_raises(tmp_path, text, what):
    path = tmp_path / "empty.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=what):
        _load(_config(path))


def test_check_columns_names_the_config_key(dataset):
    path, _ = dataset
    config = _config(path)
    table = _load(config)
    del table["region"]
    with pytest.raises(DataError) as error:
        check_columns(table, config, "csv")
    assert error.value.where == "modalities.origin.columns"
    assert "'region'" in str(error.value)


# ---------------------------------------------------------------------------
# Splitting


def _id_table(n: int) -> dict[str, np.ndarray]:
    return {"id": np.arange(n), "name": np.array([f"row{i}" for i in range(n)], dtype=object)}


def test_split_table_is_deterministic_disjoint_and_complete():
    table = _id_table(50)
    first = split_table(table, 0.2, 0.1, seed=11)
    second = split_table(table, 0.2, 0.1, seed=11)
    for split in SPLITS:
        np.testing.assert_array_equal(first[split]["id"], second[split]["id"])
    ids = [set(first[split]["id"].tolist()) for split in SPLITS]
    assert sum(len(part) for part in ids) == 50
    assert set().union(*ids) == set(range(50))
    assert [len(first[s]["id"]) for s in SPLITS] == [35, 10, 5]
    # rows stay whole: every column is cut with the same indices
    for split in SPLITS:
        assert [f"row{i}" for i in first[split]["id"]] == list(first[split]["name"])


def test_split_table_depends_on_seed():
    table = _id_table(50)
    a = split_table(table, 0.2, 0.2, seed=1)
    b = split_table(table, 0.2, 0.2, seed=2)
    assert not np.array_equal(a["test"]["id"], b["test"]["id"])


def test_split_table_with_no_train_rows_raises():
    with pytest.raises(DataError, match="train split is empty"):
        split_table(_id_table(2), 0.49, 0.49, seed=0)


def test_load_splits_end_to_end(dataset):
    path, pngs = dataset
    config = _config(path)
    splits = load_splits(config, base_dir=path.parent)
    assert sorted(splits) == sorted(SPLITS)
    sizes = {split: len(splits[split]["image"]) for split in SPLITS}
    assert sizes == {"train": 6, "validation": 2, "test": 2}
    # every row appears exactly once, identified by its height (10 + row)
    rows = sorted(int(h) - 10 for split in SPLITS for h in splits[split]["height"])
    assert rows == list(range(NUM_ROWS))
    # each row's cells stay together across columns
    for split in SPLITS:
        for image, height in zip(splits[split]["image"], splits[split]["height"]):
            assert image == pngs.get(int(height) - 10, b"")
    # same seed, same split
    again = load_splits(config, base_dir=path.parent)
    np.testing.assert_array_equal(again["test"]["height"], splits["test"]["height"])
    # the serving inputs of a split follow the modality contract
    inputs = modality_inputs(splits["train"], config.modalities)
    assert inputs["measures"].shape == (6, 2) and inputs["measures"].dtype == np.float32
    assert inputs["origin"].shape == (6, 1)
    assert all(isinstance(cell, bytes) for cell in inputs["photo"])


def _one_column_config(path: Path):
    return config_from_dict(
        {
            "data": {"source": "csv", "path": str(path)},
            "modalities": {"measures": {"type": "numeric", "columns": ["w"]}},
            "tasks": {"kind": {"type": "multiclass", "label": "label"}},
        }
    )


def test_csv_with_byte_order_mark_finds_first_column(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("w,label\n1,a\n2,b\n", encoding="utf-8-sig")
    table = _load(_one_column_config(path))
    np.testing.assert_array_equal(table["w"], [1.0, 2.0])


def test_error_line_number_counts_multiline_quoted_cells(tmp_path):
    path = tmp_path / "multiline.csv"
    path.write_text('w,label\n1,"a\nstill a"\nx,b\n', encoding="utf-8")  # the bad 'x' is on file line 4
    with pytest.raises(DataError) as error:
        _load(_one_column_config(path))
    assert f"{path}:4" in str(error.value)


def _adapt(config, table, folder):
    from keras_mtmm.preprocessing.preprocessor import Preprocessor

    Preprocessor.from_settings(config).adapt(table, folder)


def test_label_errors_at_adapt_name_file_line_and_column(dataset, tmp_path):
    """A regression label that is not a number, and a third class in an undeclared binary task."""
    path, _ = dataset
    rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    rows[7][HEADER.index("price")] = "cheap"  # data row 7 is file line 8
    _write_csv(path, rows[1:], rows[0])
    config = _config(path)
    with pytest.raises(DataError, match=rf"^{path}:8: column 'price': expected a number .* got 'cheap'"):
        _adapt(config, _load(config), tmp_path / "state")

    rows[7][HEADER.index("price")] = "1.5"
    rows[9][HEADER.index("premium")] = "maybe"  # file line 10
    _write_csv(path, rows[1:], rows[0])
    raw = _raw_config(path)
    raw["tasks"]["is_premium"].pop("classes")
    config = config_from_dict(raw)
    with pytest.raises(DataError) as error:
        _adapt(config, _load(config), tmp_path / "state")
    assert str(error.value).startswith("tasks.is_premium.label (column 'premium'): a binary task needs exactly 2")
    assert f"'maybe' (1 row), is first at {path}:10: column 'premium'" in str(error.value)
