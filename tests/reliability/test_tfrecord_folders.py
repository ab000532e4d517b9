"""Prepared TFRecord folders that were damaged, edited or made for another config: named errors, no silent loss."""

from __future__ import annotations

import json
import shutil

import pytest

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.data.tables import load_splits
from keras_mtmm.data.tfrecord import SCHEMA_FILE, prepare
from keras_mtmm.errors import DataError


def _raw(data: dict, label_kind: str = "regression") -> dict:
    return {
        "name": "records",
        "data": {"validation_fraction": 0.2, "test_fraction": 0.2, **data},
        "modalities": {"numbers": {"type": "numeric", "columns": ["a", "b"], "encoder": {"type": "identity"}}},
        "tasks": {"y": {"type": label_kind, "label": "y"}},
        "training": {"epochs": 1, "batch_size": 16},
    }


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("records")
    csv_path = folder / "rows.csv"
    csv_path.write_text("a,b,y\n" + "".join(f"{i},{i % 7},{i / 3:.3f}\n" for i in range(200)), encoding="utf-8")
    return prepare(config_from_dict(_raw({"source": "csv", "path": str(csv_path)})), folder / "out", shards=2)


def _copy(prepared, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(prepared, target)
    schema = json.loads((target / SCHEMA_FILE).read_text())
    return target, schema


def _load(folder, label_kind: str = "regression"):
    return load_splits(config_from_dict(_raw({"source": "tfrecord", "path": str(folder)}, label_kind)))


def test_an_intact_folder_loads(prepared):
    assert sum(len(split) for split in _load(prepared).values()) == 200


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_a_truncated_or_emptied_shard_is_named(prepared, tmp_path, damage):
    folder, schema = _copy(prepared, tmp_path)
    shard = folder / schema["splits"]["train"]["files"][1]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"")
    with pytest.raises(DataError, match=f"{shard.name}: has [\\d,]+ bytes, but `mtmm prepare` wrote"):
        _load(folder)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["splits"]["train"]["files"].__setitem__(0, "../../etc/hostname"), "outside the folder"),
        (lambda s: s["splits"]["train"]["files"].__setitem__(0, "/etc/hostname"), "outside the folder"),
        (lambda s: s.pop("splits"), "has no 'splits' mapping"),
        (lambda s: s["splits"]["train"].__setitem__("rows", "many"), "a whole number of 'rows'"),
        (lambda s: s["columns"].__setitem__("a", "float"), "column 'a' has no valid kind and dtype"),
    ],
    ids=["dotdot", "absolute", "no-splits", "rows", "column"],
)
def test_an_edited_schema_is_refused_naming_what_is_wrong(prepared, tmp_path, edit, message):
    folder, schema = _copy(prepared, tmp_path)
    edit(schema)
    (folder / SCHEMA_FILE).write_text(json.dumps(schema))
    with pytest.raises(DataError, match=message):
        _load(folder)


def test_a_schema_that_is_not_a_mapping(prepared, tmp_path):
    folder, _ = _copy(prepared, tmp_path)
    (folder / SCHEMA_FILE).write_text("[1, 2]")
    with pytest.raises(DataError, match="unknown schema format"):
        _load(folder)


def test_shards_of_another_config_are_refused(prepared):
    with pytest.raises(DataError, match=r"column 'y'.*label \(float\), but the config reads it as label \(bytes\)"):
        _load(prepared, label_kind="binary")


def test_a_corrupt_record_of_the_right_size_stops_training_with_a_data_error(prepared, tmp_path):
    from keras_mtmm.training.run import train

    folder, schema = _copy(prepared, tmp_path)
    shard = folder / schema["splits"]["train"]["files"][0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the record's CRC no longer matches
    shard.write_bytes(bytes(data))
    config = config_from_dict(_raw({"source": "tfrecord", "path": str(folder)}))
    with pytest.raises(DataError, match="truncated or corrupt"):
        train(config, output_dir=tmp_path / "run", export=False, verbose=0)
