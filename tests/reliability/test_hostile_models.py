"""Model files that were tampered with or hold code: one error naming the file, nothing run."""

from __future__ import annotations

import shutil

import keras
import numpy as np
import pytest

from keras_mtmm.errors import UserError
from keras_mtmm.export.saved_model import read_export_metadata
from keras_mtmm.run_folder import load_checkpoint


def test_a_keras_file_with_a_lambda_is_refused_without_running_it(tmp_path):
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(UserError, match="holds Python code"):
        load_checkpoint(path)


def test_a_file_that_is_not_a_keras_archive(tmp_path):
    path = tmp_path / "junk.keras"
    path.write_bytes(b"not a zip file")
    with pytest.raises(UserError, match=str(path)):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[1, 2]"], ids=["json", "utf8", "shape"])
def test_tampered_export_metadata_is_named(tiny_run, tmp_path, content):
    export = tmp_path / "export"
    shutil.copytree(tiny_run.export_path, export)
    (export / "assets.extra" / "keras_mtmm_metadata.json").write_bytes(content)
    with pytest.raises(UserError, match="keras_mtmm_metadata.json: is"):
        read_export_metadata(export)


def test_an_intact_export_reads(tiny_run):
    _, metadata = read_export_metadata(tiny_run.export_path)
    assert set(metadata["tasks"]) == {"shape", "premium", "price"} and metadata["version"] == 1


def test_every_signature_answers_an_empty_batch_with_empty_outputs(tiny_run):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(tiny_run.export_path))
    for name, signature in loaded.signatures.items():
        specs = signature.structured_input_signature[1]
        empty = {
            key: tf.fill([0, *spec.shape[1:]], "" if spec.dtype == tf.string else 0.0) for key, spec in specs.items()
        }
        outputs = signature(**empty)
        assert outputs and all(value.shape[0] == 0 for value in outputs.values()), name


def test_predict_scores_rows_with_every_input_missing(tiny_run, tmp_path, capsys):
    import json

    from keras_mtmm.cli.commands import main

    metadata = json.loads((tiny_run.export_path / "assets.extra" / "keras_mtmm_metadata.json").read_text())
    columns = [column for spec in metadata["inputs"].values() for column in spec["columns"]]
    path = tmp_path / "empty_rows.csv"
    path.write_text(",".join(columns) + "\n" + ("," * (len(columns) - 1) + "\n") * 3 + "\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    assert main(["predict", "--model", str(tiny_run.export_path), "--input", str(path), "--output", str(output)]) == 0
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(records) == 3  # the blank last line is not a row; the three rows of empty cells are
    assert all(np.isfinite(record["price"]) for record in records)
