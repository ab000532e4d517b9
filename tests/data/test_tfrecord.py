"""TFRecord data: `mtmm prepare`, streaming training that matches the CSV, bounded adaptation, bad records."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.data.tables import as_table, load_splits
from keras_mtmm.data.tfrecord import RecordSplit, prepare, read_schema
from keras_mtmm.errors import DataError, UserError
from tests.conftest import write_demo_csv


def _raw(csv_path, **data):
    return {
        "name": "items",
        "seed": 5,
        "data": {"source": "csv", "path": str(csv_path), "validation_fraction": 0.2, "test_fraction": 0.2, **data},
        "modalities": {
            "photo": {"type": "image", "columns": ["picture"], "image_size": [16, 16], "encoder": {"filters": [8]}},
            "words": {"type": "text", "columns": ["description"], "encoder": {"type": "bag"}},
            "numbers": {"type": "numeric", "columns": ["weight_kg"]},
            "kind": {"type": "categorical", "columns": ["material"]},
        },
        "sharing": {"shared_units": [16], "tower_units": [8]},
        "tasks": {
            "shape": {"type": "multiclass", "label": "shape"},
            "premium": {"type": "binary", "label": "premium"},
            "price": {"type": "regression", "label": "price"},
            "tags": {"type": "multilabel", "label": "tags"},
        },
        "training": {"epochs": 2, "batch_size": 16, "shuffle_buffer": 64},
    }


def _records(raw, folder, **data):
    return {**copy.deepcopy(raw), "data": {"source": "tfrecord", "path": str(folder), **data}}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tfrecord")
    csv_path = write_demo_csv(folder / "csv", 120, seed=7)
    raw = _raw(csv_path)
    out = prepare(config_from_dict(raw), folder / "records", shards=3)
    return folder, raw, out


def test_prepare_writes_round_robin_shards_and_a_schema(prepared):
    _, raw, out = prepared
    schema = read_schema(out)
    assert set(schema["splits"]) == {"train", "validation", "test"}
    assert sum(entry["rows"] for entry in schema["splits"].values()) == 120
    assert schema["splits"]["train"]["files"] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert schema["columns"]["picture"] == {"kind": "image", "dtype": "bytes"}
    assert schema["columns"]["weight_kg"] == {"kind": "numeric", "dtype": "float"}
    assert schema["columns"]["price"] == {"kind": "label", "dtype": "float"}
    csv_splits = load_splits(config_from_dict(raw))
    for split, table in csv_splits.items():
        from_records = as_table(load_splits(config_from_dict(_records(raw, out)))[split])
        assert from_records["picture"].tolist() == [bytes(v) for v in table["picture"]]  # raw bytes, row order kept
        np.testing.assert_array_equal(from_records["weight_kg"], table["weight_kg"])
        assert [v.decode() for v in from_records["shape"]] == list(table["shape"])
    shape = schema["tasks"]["shape"]
    assert shape["classes"] == ["circle", "square", "triangle"]
    assert shape["labelled"]["train"] == int((csv_splits["train"]["shape"] != "").sum())
    assert schema["tasks"]["tags"]["type"] == "multilabel"


def test_training_from_the_shards_gives_the_csv_metrics(prepared):
    from keras_mtmm.evaluation.evaluate import evaluate_model
    from keras_mtmm.training.run import train

    folder, raw, out = prepared
    results = {}
    for name, case in {"csv": raw, "tfrecord": _records(raw, out)}.items():
        results[name] = train(config_from_dict(case), output_dir=folder / f"run_{name}", export=False, verbose=0)
    assert results["tfrecord"].history["loss"] == results["csv"].history["loss"]
    assert results["tfrecord"].metrics["tasks"] == results["csv"].metrics["tasks"]
    # evaluate.py streams the test split from the shards: the same report.
    report = evaluate_model(folder / "run_tfrecord" / "best.keras", quiet=True)
    for task, result in results["csv"].metrics["tasks"].items():
        assert report["tasks"][task] == pytest.approx(result), task


def test_label_encoding_in_tensorflow_equals_the_numpy_encoding(prepared):
    from keras_mtmm.preprocessing.preprocessor import Preprocessor

    folder, raw, out = prepared
    config = config_from_dict(raw)
    table = load_splits(config)["train"]
    preprocessor = Preprocessor.from_settings(config)
    preprocessor.adapt(table, folder / "pre_labels")
    targets, masks = preprocessor.encode_labels(table)
    split = load_splits(config_from_dict(_records(raw, out)))["train"]
    columns = split.parse(tf.stack(list(split.records())))
    tf_targets, tf_masks = preprocessor.encode_labels_tf(columns)
    for task in config.tasks:
        assert tf_targets[task].dtype.as_numpy_dtype == targets[task].dtype, task
        np.testing.assert_array_equal(tf_targets[task].numpy(), targets[task], err_msg=task)
        np.testing.assert_array_equal(tf_masks[task].numpy(), masks[task], err_msg=task)


def test_adaptation_reads_a_bounded_sample(prepared):
    from keras_mtmm.preprocessing.preprocessor import Preprocessor
    from keras_mtmm.training.run_guards import adapt_preprocessor

    folder, raw, out = prepared
    config = config_from_dict(_records(raw, out, adapt_rows=20))
    split = load_splits(config)["train"]
    assert isinstance(split, RecordSplit) and split.rows > 20
    preprocessor = Preprocessor.from_settings(config)
    counts = adapt_preprocessor(preprocessor, config, split, folder / "pre_bounded")
    first = as_table(split, 20)["weight_kg"]
    assert preprocessor.state["numeric"]["numbers"]["mean"] == pytest.approx([float(np.nanmean(first))])
    # Counts and classes come from the schema (the whole split), not the sample.
    schema = read_schema(out)
    assert counts["shape"] == schema["tasks"]["shape"]["labelled"]["train"]
    assert preprocessor.classes("tags") == schema["tasks"]["tags"]["classes"]


def test_prepare_refuses_an_existing_folder_and_the_cli_reports_it(prepared, tmp_path):
    folder, raw, out = prepared
    with pytest.raises(UserError, match="already exists"):
        prepare(config_from_dict(raw), out)
    config_path = tmp_path / "c.yaml"
    import yaml

    config_path.write_text(yaml.safe_dump(raw))
    result = subprocess.run(
        [sys.executable, "-m", "keras_mtmm.cli.commands", "prepare", "--config", str(config_path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "already exists" in result.stderr and "Traceback" not in result.stderr
    fresh = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_mtmm.cli.commands",
            "prepare",
            "--config",
            str(config_path),
            "--out",
            str(tmp_path / "new"),
        ]
        + ["--shards", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fresh.returncode == 0, fresh.stderr
    assert "train=72" in fresh.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".new")], "no staging folder left behind"


def test_a_label_outside_the_classes_in_the_records_stops_training_naming_task_and_value(prepared, tmp_path):
    from keras_mtmm.training.run import train

    _, raw, out = prepared
    case = _records(raw, out)
    case["tasks"]["shape"]["classes"] = ["circle", "square"]  # triangle is in the records
    config = config_from_dict(case)
    with pytest.raises(DataError) as error:  # caught on the adaptation sample, before training starts
        train(config, output_dir=tmp_path / "run", export=False, verbose=0)
    assert error.value.where.startswith("tasks.shape.label") and "triangle" in error.value.what

    # Past the sample, the check runs inside the streaming pipeline and surfaces as the same kind of error.
    from keras_mtmm.data.pipeline import data_errors, make_dataset
    from keras_mtmm.preprocessing.preprocessor import Preprocessor

    split = load_splits(config)["train"]
    preprocessor = Preprocessor.from_settings(config)
    table = as_table(split)
    table["shape"] = np.array([b"" if v == b"triangle" else v for v in table["shape"]], dtype=object)
    preprocessor.adapt(table, tmp_path / "pre")
    with pytest.raises(DataError) as error, data_errors():
        for _ in make_dataset(preprocessor, split, 16):
            pass
    assert error.value.where == "tasks.shape.label"
    assert "triangle" in error.value.what


def test_a_corrupt_image_in_the_records_is_an_error_or_skipped_and_counted(prepared, tmp_path):
    from keras_mtmm.data.tfrecord import SCHEMA_FILE, write_shards
    from keras_mtmm.training.run import train

    _, raw, out = prepared
    bad = tmp_path / "bad"
    bad.mkdir()
    schema = read_schema(out)
    table = as_table(load_splits(config_from_dict(_records(raw, out)))["train"])
    table = {name: values.copy() for name, values in table.items()}
    table["picture"][[0, 5]] = b"\x89PNG\r\n\x1a\n truncated"
    for name, values in table.items():  # strings as a CSV gives them (the records hold UTF-8 bytes)
        if name != "picture" and values.dtype == object:
            table[name] = np.array([v.decode() for v in values], dtype=object)
    schema["splits"]["train"]["files"] = files = write_shards(table, schema["columns"], bad, "train", 2)
    schema["splits"]["train"]["sizes"] = [(bad / name).stat().st_size for name in files]
    for split in ("validation", "test"):
        for name in schema["splits"][split]["files"]:
            shutil.copy(out / name, bad / name)
    (bad / SCHEMA_FILE).write_text(json.dumps(schema))

    with pytest.raises(DataError, match="on_bad_record: skip"):
        train(config_from_dict(_records(raw, bad)), output_dir=tmp_path / "strict", export=False, verbose=0)
    result = train(
        config_from_dict(_records(raw, bad, on_bad_record="skip")),
        output_dir=tmp_path / "lenient",
        export=False,
        verbose=0,
    )
    metadata = json.loads((result.run_dir / "metadata.json").read_text())
    assert metadata["skipped_records"]["count"] == 2
    assert np.isfinite(result.history["loss"]).all()


def test_csv_bad_images_are_skipped_and_counted_when_asked(tmp_path):
    from keras_mtmm.training.run import train

    csv_path = write_demo_csv(tmp_path, 60, seed=2)
    (tmp_path / "images" / "1.png").write_bytes(b"not an image")
    (tmp_path / "images" / "2.png").unlink()
    with pytest.raises(DataError, match="1.png"):
        load_splits(config_from_dict(_raw(csv_path)))
    splits = load_splits(config_from_dict(_raw(csv_path, on_bad_record="skip")))
    assert sum(len(t["picture"]) for t in splits.values()) == 58
    assert len(splits.skipped) == 2 and "2.png" in " ".join(splits.skipped)
    case = _raw(csv_path, on_bad_record="skip")
    case["training"]["epochs"] = 1
    result = train(config_from_dict(case), output_dir=tmp_path / "run", export=False, verbose=0)
    assert json.loads((result.run_dir / "metadata.json").read_text())["skipped_records"]["count"] == 2
