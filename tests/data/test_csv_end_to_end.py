"""CSV data end to end: images on disk, partial labels, a multilabel task, train -> export -> evaluate."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.training.run import train
from tests.conftest import REPO_ROOT, write_demo_csv


@pytest.fixture(scope="module")
def csv_experiment(tmp_path_factory):
    """A CSV made from 160 demo rows: PNG files, text, numbers, categories, 4 label columns."""
    folder = tmp_path_factory.mktemp("csv_data")
    path = write_demo_csv(folder, 160, seed=3)
    raw = {
        "name": "items",
        "seed": 5,
        "data": {"source": "csv", "path": str(path), "validation_fraction": 0.2, "test_fraction": 0.2},
        "modalities": {
            "photo": {"type": "image", "columns": ["picture"], "image_size": [16, 16], "encoder": {"filters": [8]}},
            "words": {"type": "text", "columns": ["description"], "encoder": {"type": "bag"}},
            "numbers": {"type": "numeric", "columns": ["weight_kg"]},
            "kind": {"type": "categorical", "columns": ["material"]},
        },
        "fusion": {"strategy": "weighted", "units": 16},
        "sharing": {"shared_units": [16], "tower_units": [8]},
        "tasks": {
            "shape": {"type": "multiclass", "label": "shape"},
            "premium": {"type": "binary", "label": "premium", "weight": 2.0},
            "price": {"type": "regression", "label": "price", "weight": 0.5},
            "tags": {"type": "multilabel", "label": "tags"},
        },
        "weighting": {"strategy": "inverse_size"},
        "training": {"epochs": 1, "batch_size": 16},
    }
    config = config_from_dict(raw)
    result = train(config, output_dir=folder / "run", export_dir=folder / "models", verbose=0)
    return folder, result


def test_csv_training_uses_partial_labels_and_inverse_size_weights(csv_experiment):
    folder, result = csv_experiment
    metadata = json.loads((result.run_dir / "metadata.json").read_text())
    assert metadata["tasks"]["tags"]["classes"] == ["glass", "heavy", "metal", "plastic", "wood"]
    weights = result.task_weights
    assert sum(weights.values()) == pytest.approx(4.0)
    # price (the demo's label-scarce task) has the fewest labels, so inverse_size gives it the largest weight.
    assert max(weights, key=weights.get) == "price"
    test = result.metrics["tasks"]
    assert test["premium"]["labelled"] < result.metrics["examples"] == 32
    assert test["tags"]["labelled"] == 32
    assert set(test["tags"]) == {"loss", "f1_micro", "f1_macro", "auc", "labelled"}


def test_csv_export_serves_raw_inputs_and_evaluates_the_same(csv_experiment, tmp_path):
    folder, result = csv_experiment
    export = result.export_path
    assert export == folder / "models" / "items" / "1"
    output = tmp_path / "metrics.json"
    completed = subprocess.run(
        [sys.executable, "evaluate.py", "--model", str(export), "--output", str(output)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(output.read_text())
    for task, values in result.metrics["tasks"].items():
        for name, value in values.items():
            if value is None:
                assert report["tasks"][task][name] is None
            else:
                assert report["tasks"][task][name] == pytest.approx(value, rel=1e-4, abs=1e-5), (task, name)
    stored = yaml.safe_load((export / "assets.extra" / "keras_mtmm_config.yaml").read_text())
    assert stored["data"]["path"] == str(folder / "items.csv")
    assert stored["weighting"]["strategy"] == "inverse_size"


def test_per_task_signatures_return_one_task_and_its_class_names(csv_experiment):
    import numpy as np
    import tensorflow as tf

    from keras_mtmm.data.tables import load_splits
    from keras_mtmm.evaluation.scoring import raw_inputs

    folder, result = csv_experiment
    metadata = json.loads((result.export_path / "assets.extra" / "keras_mtmm_metadata.json").read_text())
    config = config_from_dict(yaml.safe_load((result.run_dir / "config.yaml").read_text()))
    test = load_splits(config)["test"]
    inputs = {k: tf.constant(v) for k, v in raw_inputs(test, metadata).items()}
    loaded = tf.saved_model.load(str(result.export_path))
    everything = {k: v.numpy() for k, v in loaded.signatures["serving_default"](**inputs).items()}
    assert set(loaded.signatures) == {"serving_default", *(f"predict_{task}" for task in metadata["tasks"])}
    for task, spec in metadata["tasks"].items():
        served = {k: v.numpy() for k, v in loaded.signatures[f"predict_{task}"](**inputs).items()}
        np.testing.assert_allclose(served[task], everything[task], rtol=1e-6)
        classes = np.array(spec["classes"], dtype=object)
        probabilities = everything[task]
        if spec["type"] == "regression":
            assert set(served) == {task}
            continue
        assert set(served) == {task, f"{task}_label"}
        if spec["type"] == "binary":
            expected = classes[(probabilities[:, 0] > 0.5).astype(int)]
        elif spec["type"] == "multiclass":
            expected = classes[np.argmax(probabilities, axis=-1)]
        else:
            expected = ["|".join(classes[row > 0.5]) for row in probabilities]
        assert [label.decode() for label in served[f"{task}_label"]] == list(expected), task


def test_the_same_rows_as_parquet_score_the_same_metrics(csv_experiment, tmp_path):
    """evaluate --data on the CSV and on a Parquet file of its rows (typed columns, images as bytes)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from keras_mtmm.evaluation.evaluate import evaluate_model

    folder, result = csv_experiment
    table = pacsv.read_csv(folder / "items.csv")  # numbers as float64, empty cells as nulls
    assert pa.types.is_floating(table.schema.field("weight_kg").type)
    pictures = [(folder / p).read_bytes() if p else None for p in table.column("picture").to_pylist()]
    table = table.set_column(table.schema.get_field_index("picture"), "picture", pa.array(pictures, pa.binary()))
    target = tmp_path / "items.parquet"  # another folder: the images travel inside the file
    pq.write_table(table, target, row_group_size=50)
    from_csv = evaluate_model(result.export_path, data=folder / "items.csv", split=None, quiet=True)
    from_parquet = evaluate_model(result.export_path, data=target, split=None, quiet=True)
    assert from_parquet["examples"] == from_csv["examples"] == 160
    assert from_parquet["tasks"] == from_csv["tasks"]
