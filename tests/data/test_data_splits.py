"""Splits as data comes (keras_mtmm.data.splits): split files, a split column, random fractions (stratified),
with exact row counts per split; their errors; paths relative to the config file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

from keras_mtmm.config.data import config_relative_paths
from keras_mtmm.config.loading import config_from_dict, load_config
from keras_mtmm.data.demo import encode_png
from keras_mtmm.data.splits import SPLITS, split_table
from keras_mtmm.data.tables import load_splits
from keras_mtmm.errors import ConfigError, DataError

HEADER = ["x", "colour", "y", "price", "picture", "split"]


def _write(path: Path, rows: list[list], header: list[str] = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _rows(count: int, start: int = 0, split: str = "train", image: str = "") -> list[list]:
    """Row i: x = i, y = class i % 3 ('a', 'b', 'c'), its split's name in column `split`."""
    return [[i, ["red", "blue"][i % 2], "abc"[i % 3], 1.5 * i, image, split] for i in range(start, start + count)]


def _raw(**data) -> dict:
    return {
        "name": "splits",
        "seed": 7,
        "data": {"source": "csv", **data},
        "modalities": {
            "numbers": {"type": "numeric", "columns": ["x"]},
            "kind": {"type": "categorical", "columns": ["colour"]},
        },
        "tasks": {"y": {"type": "multiclass", "label": "y"}, "price": {"type": "regression", "label": "price"}},
    }


def _sizes(splits) -> dict[str, int]:
    return {split: len(splits[split]["x"]) for split in SPLITS}


def _x(table) -> list[int]:
    return sorted(int(v) for v in table["x"])


# ---------------------------------------------------------------------------
# The three forms, exact row counts


def test_three_split_files_give_their_rows_exactly(tmp_path):
    _write(tmp_path / "train.csv", _rows(30))
    _write(tmp_path / "val.csv", _rows(7, start=100))
    _write(tmp_path / "test.csv", _rows(11, start=200))
    config = config_from_dict(
        _raw(train=str(tmp_path / "train.csv"), validation=str(tmp_path / "val.csv"), test=str(tmp_path / "test.csv"))
    )
    splits = load_splits(config)
    assert _sizes(splits) == {"train": 30, "validation": 7, "test": 11}
    assert _x(splits["train"]) == list(range(30))
    assert _x(splits["validation"]) == list(range(100, 107))
    assert _x(splits["test"]) == list(range(200, 211))
    # each row knows its file and 1-based CSV line (the header is line 1)
    test = splits["test"]
    assert test.where(0) == f"{tmp_path / 'test.csv'}:{int(test['x'][0]) - 200 + 2}"


def test_a_glob_of_train_files_and_a_missing_test_file(tmp_path, capsys):
    _write(tmp_path / "parts" / "train-1.csv", _rows(12))
    _write(tmp_path / "parts" / "train-2.csv", _rows(8, start=12))
    _write(tmp_path / "val.csv", _rows(5, start=100))
    config = config_from_dict(_raw(train=str(tmp_path / "parts" / "train-*.csv"), validation=str(tmp_path / "val.csv")))
    splits = load_splits(config)
    assert _sizes(splits) == {"train": 20, "validation": 5, "test": 0}
    assert _x(splits["train"]) == list(range(20))
    files = splits["train"].row_files()
    assert sorted(set(files)) == [str(tmp_path / "parts" / "train-1.csv"), str(tmp_path / "parts" / "train-2.csv")]
    row = int(np.flatnonzero(splits["train"]["x"] == 15)[0])  # x = 15 is line 5 of train-2.csv
    assert splits["train"].where(row) == f"{tmp_path / 'parts' / 'train-2.csv'}:5"


def test_a_missing_validation_file_is_cut_from_train_by_the_fraction(tmp_path):
    _write(tmp_path / "train.csv", _rows(40))
    _write(tmp_path / "test.csv", _rows(9, start=100))
    config = config_from_dict(
        _raw(train=str(tmp_path / "train.csv"), test=str(tmp_path / "test.csv"), validation_fraction=0.25)
    )
    splits = load_splits(config)
    assert _sizes(splits) == {"train": 30, "validation": 10, "test": 9}
    assert sorted(_x(splits["train"]) + _x(splits["validation"])) == list(range(40))
    assert _x(splits["test"]) == list(range(100, 109))


def test_a_split_column_gives_the_rows_it_names(tmp_path):
    rows = _rows(20) + _rows(6, start=20, split="validation") + _rows(9, start=26, split="test")
    rng = np.random.default_rng(0)
    rows = [rows[i] for i in rng.permutation(len(rows))]
    path = _write(tmp_path / "all.csv", rows)
    splits = load_splits(config_from_dict(_raw(path=str(path), split_column="split")))
    assert _sizes(splits) == {"train": 20, "validation": 6, "test": 9}
    assert _x(splits["validation"]) == list(range(20, 26))
    assert _x(splits["test"]) == list(range(26, 35))


def test_a_split_column_without_validation_rows_cuts_them_from_train(tmp_path):
    path = _write(tmp_path / "all.csv", _rows(50) + _rows(10, start=50, split="test"))
    config = config_from_dict(_raw(path=str(path), split_column="split", validation_fraction=0.2))
    splits = load_splits(config)
    assert _sizes(splits) == {"train": 40, "validation": 10, "test": 10}
    assert max(_x(splits["validation"])) < 50


def test_random_fractions_give_rounded_counts(tmp_path):
    path = _write(tmp_path / "all.csv", _rows(101))
    splits = load_splits(config_from_dict(_raw(path=str(path), validation_fraction=0.15, test_fraction=0.2)))
    assert _sizes(splits) == {"train": 101 - 15 - 20, "validation": 15, "test": 20}  # round(15.15), round(20.2)
    assert sorted(_x(splits["train"]) + _x(splits["validation"]) + _x(splits["test"])) == list(range(101))


def test_stratified_fractions_keep_each_class_share_and_the_same_counts(tmp_path):
    # 60 'a', 30 'b', 10 'c': stratified, each split holds its share of every class to within one row.
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    rows = [[i, "red", label, 1.0, "", "train"] for i, label in enumerate(labels)]
    path = _write(tmp_path / "all.csv", rows)
    config = config_from_dict(_raw(path=str(path), validation_fraction=0.2, test_fraction=0.1, stratify="y"))
    splits = load_splits(config)
    assert _sizes(splits) == {"train": 70, "validation": 20, "test": 10}
    for split, fraction in (("test", 0.1), ("validation", 0.2)):
        counts = {label: int(np.sum(splits[split]["y"] == label)) for label in "abc"}
        for label, total in (("a", 60), ("b", 30), ("c", 10)):
            assert abs(counts[label] - total * fraction) <= 1, (split, counts)
    assert sorted(_x(splits["train"]) + _x(splits["validation"]) + _x(splits["test"])) == list(range(100))
    again = load_splits(config)
    np.testing.assert_array_equal(again["test"]["x"], splits["test"]["x"])


def test_stratified_cut_is_exact_where_the_classes_allow_it():
    table = {"id": np.arange(40), "label": np.array(["p"] * 20 + ["q"] * 20, dtype=object)}
    cut = split_table(table, 0.25, 0.25, seed=3, strata=table["label"])
    for split in SPLITS:
        counts = [int(np.sum(cut[split]["label"] == label)) for label in "pq"]
        assert counts[0] == counts[1] == len(cut[split]["id"]) // 2, (split, counts)
    unstratified = split_table(table, 0.25, 0.25, seed=3)
    assert [len(cut[s]["id"]) for s in SPLITS] == [len(unstratified[s]["id"]) for s in SPLITS] == [20, 10, 10]


def test_image_paths_are_relative_to_each_split_file(tmp_path):
    png = encode_png(np.full((4, 4, 3), 9, dtype=np.uint8))
    for folder in ("a", "b"):
        (tmp_path / folder / "images").mkdir(parents=True)
        (tmp_path / folder / "images" / "p.png").write_bytes(png)
    _write(tmp_path / "a" / "train.csv", _rows(10, image="images/p.png"))
    _write(tmp_path / "b" / "test.csv", _rows(4, start=10, image="images/p.png"))
    raw = _raw(train=str(tmp_path / "a" / "train.csv"), test=str(tmp_path / "b" / "test.csv"))
    raw["modalities"]["photo"] = {"type": "image", "columns": ["picture"], "image_size": [8, 8]}
    splits = load_splits(config_from_dict(raw))
    assert all(cell == png for split in SPLITS for cell in splits[split]["picture"])


def test_mtmm_prepare_keeps_the_split_files(tmp_path):
    from keras_mtmm.data.tfrecord import prepare, read_schema

    _write(tmp_path / "train.csv", _rows(13))
    _write(tmp_path / "val.csv", _rows(4, start=20))
    _write(tmp_path / "test.csv", _rows(6, start=30))
    raw = _raw(train=str(tmp_path / "train.csv"), validation=str(tmp_path / "val.csv"), test=str(tmp_path / "test.csv"))
    folder = prepare(config_from_dict(raw), tmp_path / "records", shards=2)
    schema = read_schema(folder)
    assert {split: entry["rows"] for split, entry in schema["splits"].items()} == {
        "train": 13,
        "validation": 4,
        "test": 6,
    }
    records = _raw(path=str(folder))
    records["data"]["source"] = "tfrecord"
    assert {split: len(part) for split, part in load_splits(config_from_dict(records)).items()} == {
        "train": 13,
        "validation": 4,
        "test": 6,
    }


# ---------------------------------------------------------------------------
# Errors


def test_an_empty_split_file_is_named(tmp_path):
    _write(tmp_path / "train.csv", _rows(10))
    _write(tmp_path / "test.csv", [])
    config = config_from_dict(_raw(train=str(tmp_path / "train.csv"), test=str(tmp_path / "test.csv")))
    with pytest.raises(DataError) as error:
        load_splits(config)
    assert str(error.value).startswith(f"{tmp_path / 'test.csv'}: the CSV has a header but no data rows")


def test_a_split_file_with_another_header_is_named(tmp_path):
    _write(tmp_path / "train.csv", _rows(10))
    _write(tmp_path / "val.csv", [row[:-1] for row in _rows(3)], HEADER[:-1])  # no 'split' column
    config = config_from_dict(_raw(train=str(tmp_path / "train.csv"), validation=str(tmp_path / "val.csv")))
    with pytest.raises(DataError) as error:
        load_splits(config)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'val.csv'} (data.validation): its header differs"), message
    assert "no column 'split'" in message and str(tmp_path / "train.csv") in message


def test_a_split_column_with_an_unknown_value_names_file_line_and_column(tmp_path):
    rows = _rows(8)
    rows[5][-1] = "Test"  # file line 7
    path = _write(tmp_path / "all.csv", rows)
    with pytest.raises(DataError) as error:
        load_splits(config_from_dict(_raw(path=str(path), split_column="split")))
    message = str(error.value)
    assert message.startswith(f"{path}:7: column 'split': says 'Test'"), message
    assert "write train, validation or test in every row; did you mean 'test'?" in message


def test_a_file_in_two_splits_is_refused(tmp_path):
    _write(tmp_path / "train.csv", _rows(10))
    _write(tmp_path / "test.csv", _rows(3))
    config = config_from_dict(_raw(train=str(tmp_path / "train.csv"), test=str(tmp_path / "t*.csv")))
    with pytest.raises(DataError, match=r"^data.test: .*train.csv' is also in data.train"):
        load_splits(config)


def test_a_glob_that_matches_nothing_is_named(tmp_path):
    config = config_from_dict(_raw(train=str(tmp_path / "train-*.csv")))
    with pytest.raises(DataError, match=r"^data.train: no file matches"):
        load_splits(config)


@pytest.mark.parametrize(
    ("data", "where", "what"),
    [
        ({"path": "a.csv", "train": "b.csv"}, "data.train", "both data.path and split files are set"),
        ({"path": "a.csv", "validation": "b.csv"}, "data.validation", "data.train is not set"),
        ({"train": "a.csv", "split_column": "split"}, "data.split_column", "split files are already split"),
        ({"path": "a.csv", "stratify": "why"}, "data.stratify", "no task named 'why'"),
        ({"path": "a.csv", "stratify": "price"}, "data.stratify", "regression task"),
        ({"train": "a.csv", "validation": "b.csv", "stratify": "y"}, "data.stratify", "nothing is split at random"),
        ({}, "data.path", "no path is set"),
    ],
)
def test_config_errors_of_the_split_forms(data, where, what):
    with pytest.raises(ConfigError) as error:
        config_from_dict(_raw(**data))
    assert error.value.where == where and what in error.value.what, str(error.value)


def test_stratify_typo_suggests_the_task():
    with pytest.raises(ConfigError, match="did you mean 'price'"):
        config_from_dict(_raw(path="a.csv", stratify="prise"))


def test_split_files_on_another_source_are_refused():
    raw = _raw(train="a.csv")
    raw["data"]["source"] = "demo"
    with pytest.raises(ConfigError, match="split files are read from csv or parquet data"):
        config_from_dict(raw)


# ---------------------------------------------------------------------------
# Paths relative to the config file


def test_a_config_run_from_another_folder_finds_its_files(tmp_path, monkeypatch):
    project = tmp_path / "project"
    _write(project / "data" / "train.csv", _rows(20))
    _write(project / "data" / "test.csv", _rows(5, start=20))
    raw = _raw(train="../data/train.csv", test="../data/te*.csv")  # a glob, relative to the config file too
    (project / "configs").mkdir()
    config_path = project / "configs" / "exp.yaml"
    config_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config("../project/configs/exp.yaml")
    assert config.data.train == str(project / "data" / "train.csv")
    assert _sizes(load_splits(config)) == {"train": 18, "validation": 2, "test": 5}


def test_set_paths_stay_relative_to_the_working_folder(tmp_path, monkeypatch):
    _write(tmp_path / "here" / "mine.csv", _rows(10))
    config_path = tmp_path / "configs" / "exp.yaml"
    config_path.parent.mkdir()
    config_path.write_text(yaml.safe_dump(_raw(path="never.csv")), encoding="utf-8")
    monkeypatch.chdir(tmp_path / "here")
    config = load_config(config_path, ["data.path=mine.csv"])
    assert config.data.path == "mine.csv"
    assert sum(_sizes(load_splits(config)).values()) == 10
    assert load_config(config_path).data.path == str(tmp_path / "configs" / "never.csv")


def test_hub_handles_follow_the_config_file_and_urls_stay():
    raw = {
        "modalities": {
            "a": {"encoder": {"type": "hub", "handle": "models/text"}},
            "b": {"encoder": {"type": "hub", "handle": "https://tfhub.dev/x/1"}},
            "c": {"encoder": {"type": "hub", "handle": "/abs/model"}},
        },
        "tasks": {"t": {"data": {"path": "t.csv"}}},
        "training": {"output_dir": "runs"},
    }
    config_relative_paths(raw, "/cfg")
    encoders = {name: m["encoder"]["handle"] for name, m in raw["modalities"].items()}
    assert encoders == {"a": "/cfg/models/text", "b": "https://tfhub.dev/x/1", "c": "/abs/model"}
    assert raw["tasks"]["t"]["data"]["path"] == "/cfg/t.csv"
    assert raw["training"]["output_dir"] == "runs"  # written where train.py runs, as before


# ---------------------------------------------------------------------------
# Names in --set


def test_a_task_name_typo_in_set_says_no_such_task_and_suggests_the_closest():
    from tests.conftest import DEMO_CONFIG

    with pytest.raises(ConfigError) as error:
        load_config(DEMO_CONFIG, ["tasks.prce.weight=0.5"])
    assert str(error.value).startswith("--set tasks.prce.weight: no task named 'prce'; did you mean 'price'?")
    with pytest.raises(ConfigError, match=r"^--set modalities.imgae.image_size: no modality named 'imgae'; did you"):
        load_config(DEMO_CONFIG, ["modalities.imgae.image_size=[16, 16]"])
    added = load_config(DEMO_CONFIG, ["tasks.costly.type=binary", "tasks.costly.label=premium"])
    assert added.tasks["costly"].label == "premium"  # a new task, given whole, is not a typo


def test_a_regression_label_that_is_not_a_number_names_file_line_and_column(tmp_path):
    from keras_mtmm.data.tables import load_file
    from keras_mtmm.evaluation.scoring import encode_targets

    rows = _rows(5)
    rows[1][HEADER.index("price")] = "Torgersen"  # file line 3
    path = _write(tmp_path / "penguins.csv", rows)
    table = load_file(path, config_from_dict(_raw(path=str(path))))
    metadata = {"tasks": {"price": {"type": "regression", "label": "price", "classes": []}}}
    with pytest.raises(DataError) as error:
        encode_targets(table, metadata)
    assert str(error.value).startswith(
        f"{path}:3: column 'price': expected a number (task price is a regression), got 'Torgersen'"
    ), str(error.value)


def test_a_numeric_column_of_memory_data_names_its_row():
    from types import SimpleNamespace

    from keras_mtmm.data.sources import table_from_memory
    from keras_mtmm.data.tables import modality_inputs

    table = table_from_memory({"x": ["1.5", "2", "Biscoe"]})
    modalities = {"numbers": SimpleNamespace(type="numeric", columns=["x"])}
    with pytest.raises(DataError, match=r"^the memory data, row 2: column 'x': expected a number, got 'Biscoe'"):
        modality_inputs(table, modalities)


def test_a_tasks_own_split_files_are_named_by_its_key(tmp_path):
    """Errors in a task's own data block say tasks.<t>.data.*, not data.*."""
    _write(tmp_path / "train.csv", _rows(30))
    _write(tmp_path / "other" / "train.csv", _rows(12))
    _write(tmp_path / "other" / "test.csv", _rows(5), header=[*HEADER[:-1], "extra"])
    raw = _raw(path=str(tmp_path / "train.csv"))
    raw["tasks"]["price"]["data"] = {"source": "csv", "train": str(tmp_path / "other" / "none*.csv")}
    with pytest.raises(DataError, match=r"^tasks.price.data.train: no file matches"):
        load_splits(config_from_dict(raw))
    raw["tasks"]["price"]["data"] = {
        "source": "csv",
        "train": str(tmp_path / "other" / "train.csv"),
        "test": str(tmp_path / "other" / "test.csv"),
    }
    with pytest.raises(DataError, match=r"test.csv \(tasks.price.data.test\): its header differs"):
        load_splits(config_from_dict(raw))
    raw["tasks"]["price"]["data"] = {"source": "csv", "path": str(tmp_path / "other" / "missing.csv")}
    with pytest.raises(DataError, match=r"^tasks.price.data.path: cannot open CSV .*missing.csv"):
        load_splits(config_from_dict(raw))
    raw["tasks"]["price"]["data"] = {"source": "tfrecord", "path": str(tmp_path / "other")}
    with pytest.raises(DataError, match=r"^tasks.price.data.path: .*other' has no .*; point tasks.price.data.path at"):
        load_splits(config_from_dict(raw))
