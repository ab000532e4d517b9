"""`mtmm predict`: CSV / JSON-lines files scored by an export equal its own serving signature on the same rows."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

ROWS = 10
MISSING_IMAGE, MISSING_TEXT, MISSING_NUMBER, MISSING_CATEGORY = 2, 4, 5, 7
NUMERIC = ("weight_kg", "age_days", "rating")
CATEGORICAL = ("material", "region")


@pytest.fixture(scope="module")
def scoring_input(tmp_path_factory):
    """Demo rows as `items.csv` and `items.jsonl` (images as PNG files), and the raw serving inputs they hold.

    Some rows lack their image, text, a number or a category (missing modalities, scored all the same);
    the label columns are there too and must be ignored.
    """
    from keras_mtmm.data.demo import generate_demo

    folder = tmp_path_factory.mktemp("predict_input")
    (folder / "images").mkdir()
    table = generate_demo(ROWS, seed=11, image_size=16)
    table["image"][MISSING_IMAGE] = b""
    table["description"][MISSING_TEXT] = ""
    table["weight_kg"][MISSING_NUMBER] = np.nan
    table["region"][MISSING_CATEGORY] = ""
    records = []
    for row in range(ROWS):
        record = {"sku": f"item-{row}", "description": table["description"][row]}
        if table["image"][row]:
            record["image"] = f"images/{row}.png"
            (folder / record["image"]).write_bytes(table["image"][row])
        for column in NUMERIC:  # repr of the float32 value reads back as the same float32
            value = float(table[column][row])
            record[column] = None if math.isnan(value) else value
        for column in (*CATEGORICAL, "shape", "premium"):
            record[column] = table[column][row]
        records.append(record)
    columns = ["sku", "image", "description", *NUMERIC, *CATEGORICAL, "shape", "premium"]
    with (folder / "items.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for record in records:
            writer.writerow(["" if record.get(c) is None else record.get(c) for c in columns])
    with (folder / "items.jsonl").open("w") as handle:
        for record in records:  # JSON lines: a missing image is a missing key, a missing number null
            handle.write(json.dumps(record) + "\n")
    inputs = {
        "image": np.array(list(table["image"]), dtype=object),
        "text": np.array(list(table["description"]), dtype=object),
        "numeric": np.stack([table[c] for c in NUMERIC], axis=1).astype(np.float32),
        "categorical": np.stack([table[c] for c in CATEGORICAL], axis=1).astype(object),
    }
    return folder, inputs


@pytest.fixture(scope="module")
def expected(tiny_run, scoring_input):
    """The export's own `serving_default` outputs on the rows, and its metadata."""
    import tensorflow as tf

    from keras_mtmm.export.saved_model import read_export_metadata

    _, inputs = scoring_input
    _, metadata = read_export_metadata(tiny_run.export_path)
    serving = tf.saved_model.load(str(tiny_run.export_path)).signatures["serving_default"]
    strings = {name: tf.constant(values, dtype=tf.string) for name, values in inputs.items() if name != "numeric"}
    outputs = serving(**strings, numeric=tf.constant(inputs["numeric"]))
    return {task: outputs[task].numpy() for task in metadata["tasks"]}, metadata


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_predictions(rows: list[dict], expected, jsonl: bool) -> None:
    outputs, metadata = expected
    assert len(rows) == ROWS
    tasks = metadata["tasks"]
    assert {spec["type"] for spec in tasks.values()} == {"multiclass", "binary", "regression"}
    for row, record in enumerate(rows):
        for task, spec in tasks.items():
            values, classes = outputs[task][row], spec["classes"]
            if spec["type"] == "binary":
                assert record[task] == classes[1 if values[0] > 0.5 else 0]
                assert float(record[f"{task}_probability"]) == pytest.approx(values[0], abs=1e-5)
            elif spec["type"] == "multiclass":
                assert record[task] == classes[int(np.argmax(values))]
                assert float(record[f"{task}_probability"]) == pytest.approx(values.max(), abs=1e-5)
                if jsonl:
                    assert list(record[f"{task}_probabilities"]) == classes
                    np.testing.assert_allclose(list(record[f"{task}_probabilities"].values()), values, atol=1e-5)
                else:
                    assert f"{task}_probabilities" not in record
            else:
                assert float(record[task]) == pytest.approx(values[0], rel=1e-5)


def test_csv_output_equals_the_serving_signature(tiny_run, scoring_input, expected, tmp_path, capsys):
    from keras_mtmm.cli.commands import main

    folder, _ = scoring_input
    output = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(tiny_run.export_path), "--input", str(folder / "items.csv"),
                 "--output", str(output)]) == 0  # fmt: skip
    rows = read_csv(output)
    assert list(rows[0]) == ["row", "shape", "shape_probability", "premium", "premium_probability", "price"]
    assert [int(r["row"]) for r in rows] == list(range(ROWS))
    check_predictions(rows, expected, jsonl=False)
    captured = capsys.readouterr()
    assert f"predicted {ROWS} rows" in captured.out and str(output) in captured.out
    assert f"{ROWS}/{ROWS} rows" in captured.err  # the progress bar's last state
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.csv"]  # no temporary file left


def test_jsonl_input_and_output_with_an_id_column(tiny_run, scoring_input, expected, tmp_path, capsys):
    from keras_mtmm.serve.batch_predict import predict_file

    folder, _ = scoring_input
    summary = predict_file(tiny_run.export_path, folder / "items.jsonl", tmp_path / "preds.jsonl", id_column="sku")
    assert summary.rows == ROWS
    rows = read_jsonl(tmp_path / "preds.jsonl")
    assert [r["sku"] for r in rows] == [f"item-{i}" for i in range(ROWS)]
    assert "row" not in rows[0]
    check_predictions(rows, expected, jsonl=True)


def test_small_batches_give_the_one_batch_result(tiny_run, scoring_input, tmp_path):
    from keras_mtmm.serve.batch_predict import predict_file

    folder, _ = scoring_input
    predict_file(tiny_run.export_path, folder / "items.csv", tmp_path / "one.csv", batch_size=256, quiet=True)
    predict_file(tiny_run.export_path, folder / "items.csv", tmp_path / "small.csv", batch_size=3, quiet=True)
    one, small = read_csv(tmp_path / "one.csv"), read_csv(tmp_path / "small.csv")
    assert [r["row"] for r in small] == [r["row"] for r in one]
    for a, b in zip(one, small):
        assert a["shape"] == b["shape"] and a["premium"] == b["premium"]
        for column in ("shape_probability", "premium_probability", "price"):
            assert float(a[column]) == pytest.approx(float(b[column]), rel=1e-5, abs=1e-6)


def test_a_corrupt_image_names_file_line_and_column_and_leaves_no_output(tiny_run, scoring_input, tmp_path, capsys):
    from keras_mtmm.cli.commands import main

    folder, _ = scoring_input
    lines = (folder / "items.csv").read_text().splitlines()
    (tmp_path / "images").mkdir()
    for image in (folder / "images").iterdir():
        (tmp_path / "images" / image.name).write_bytes(image.read_bytes())
    (tmp_path / "images" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    bad_row = 7  # after the first batch of 4 rows was scored and written
    lines[1 + bad_row] = lines[1 + bad_row].replace(f"images/{bad_row}.png", "images/bad.png")
    (tmp_path / "items.csv").write_text("\n".join(lines) + "\n")
    output = tmp_path / "out" / "preds.csv"
    status = main(["predict", "--model", str(tiny_run.export_path), "--input", str(tmp_path / "items.csv"),
                   "--output", str(output), "--batch-size", "4", "--quiet"])  # fmt: skip
    assert status == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: {tmp_path / 'items.csv'}:{bad_row + 2}: column 'image': ")
    assert "bad.png" in error and "is not a readable" in error
    assert not output.exists()
    assert list((tmp_path / "out").iterdir()) == []  # the temporary file is gone too


def test_bad_output_extension_and_batch_size_exit_2(tiny_run, scoring_input, tmp_path, capsys):
    from keras_mtmm.cli.commands import main

    folder, _ = scoring_input
    base = ["predict", "--model", str(tiny_run.export_path), "--input", str(folder / "items.csv")]
    assert main([*base, "--output", str(tmp_path / "preds.txt")]) == 2
    assert "error: --output: cannot tell the format of" in capsys.readouterr().err
    assert main([*base, "--output", str(tmp_path / "preds.csv"), "--batch-size", "0"]) == 2
    assert "error: --batch-size: expected a positive integer, got 0" in capsys.readouterr().err
    assert main([*base, "--output", str(folder / "items.csv")]) == 2
    assert "error: --output: is the input file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# Readers and output records, without a model

COLUMNS = {"image": "image", "description": "text", "weight_kg": "numeric", "material": "categorical"}


def test_readers_parse_cells_like_the_csv_source_and_name_bad_rows(tmp_path):
    from keras_mtmm.errors import DataError
    from keras_mtmm.serve.batch_predict import column_table, read_csv_rows, read_jsonl_rows

    path, lines = tmp_path / "rows.csv", tmp_path / "rows.jsonl"
    csv_at, jsonl_at = re.escape(str(path)), re.escape(str(lines))
    path.write_text("\ufeffimage,description,weight_kg,material,extra\n,a b,1.5,wood,x\n\n,,,,x\n")
    rows = list(read_csv_rows(path, COLUMNS, None))
    assert [row.where for row in rows] == [f"{path}:2", f"{path}:4"]  # the blank line is skipped
    table = column_table(rows, COLUMNS)
    assert list(table["image"]) == [b"", b""] and list(table["description"]) == ["a b", ""]
    assert table["weight_kg"].dtype == np.float32 and table["weight_kg"][0] == 1.5 and np.isnan(table["weight_kg"][1])

    path.write_text("image,description,material\n,a,wood\n")
    with pytest.raises(DataError, match=rf"^{csv_at}:1: column 'weight_kg': is a model input but not in the header"):
        list(read_csv_rows(path, COLUMNS, None))
    path.write_text("image,description,weight_kg,material\n,a,heavy,wood\n")
    with pytest.raises(DataError, match=rf"^{csv_at}:2: column 'weight_kg': expected a number, got 'heavy'"):
        list(read_csv_rows(path, COLUMNS, None))

    lines.write_text('{"weight_kg": 2, "material": null, "id": 5}\n\n{"weight_kg": "3.5", "id": 6}\n')
    rows = list(read_jsonl_rows(lines, COLUMNS, "id"))
    assert [row.identifier for row in rows] == [5, 6] and rows[1].where == f"{lines}:3"
    table = column_table(rows, COLUMNS)
    assert list(table["weight_kg"]) == [2.0, 3.5] and list(table["material"]) == ["", ""]
    lines.write_text('{"id": 1}\n{"weight_kg": true, "id": 2}\n')
    with pytest.raises(DataError, match=rf"^{jsonl_at}:2: column 'weight_kg': expected a number, got true"):
        list(read_jsonl_rows(lines, COLUMNS, "id"))
    lines.write_text('{"id": 1, "image": "missing.png"}\n')
    with pytest.raises(DataError, match=rf"^{jsonl_at}:1: column 'image': cannot read image"):
        list(read_jsonl_rows(lines, COLUMNS, "id"))
    lines.write_text("[1, 2]\n")
    with pytest.raises(DataError, match=rf"^{jsonl_at}:1: expected a JSON object, got list"):
        list(read_jsonl_rows(lines, COLUMNS, None))
    # Beyond float32 (the model's input): an error at the row, not an infinite input
    lines.write_text('{"weight_kg": 1.5}\n{"weight_kg": 3.5e38}\n')
    with pytest.raises(DataError, match=rf"^{jsonl_at}:2: column 'weight_kg': 3.5e\+38 is not a finite number"):
        column_table(list(read_jsonl_rows(lines, COLUMNS, None)), COLUMNS)
    path.write_text("image,description,weight_kg,material\n,a,inf,wood\n")
    with pytest.raises(DataError, match=rf"^{csv_at}:2: column 'weight_kg': inf is not a finite number"):
        column_table(list(read_csv_rows(path, COLUMNS, None)), COLUMNS)


def test_records_for_every_task_type():
    from keras_mtmm.serve.batch_predict import output_fields, prediction_records

    metadata = {
        "label_separator": "|",
        "tasks": {
            "premium": {"type": "binary", "classes": ["no", "yes"]},
            "shape": {"type": "multiclass", "classes": ["circle", "square", "triangle"]},
            "tags": {"type": "multilabel", "classes": ["heavy", "metal", "wood"]},
            "price": {"type": "regression", "classes": None},
        },
    }
    outputs = {
        "premium": np.array([[0.75], [0.25]], dtype=np.float32),
        "shape": np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]], dtype=np.float32),
        "tags": np.array([[0.9, 0.2, 0.6], [0.1, 0.2, 0.3]], dtype=np.float32),
        "price": np.array([[12.5], [np.nan]], dtype=np.float32),
    }
    assert output_fields(metadata, "row", jsonl=False) == [
        "row", "premium", "premium_probability", "shape", "shape_probability", "tags", "price",
    ]  # fmt: skip
    jsonl = list(prediction_records(outputs, metadata, [0, 1], "row", "jsonl"))
    assert list(jsonl[0]) == output_fields(metadata, "row", jsonl=True)
    assert jsonl[0] == {
        "row": 0,
        "premium": "yes",
        "premium_probability": 0.75,
        "shape": "square",
        "shape_probability": 0.7,  # the float32 output, written as its shortest decimal
        "shape_probabilities": {"circle": 0.1, "square": 0.7, "triangle": 0.2},
        "tags": "heavy|wood",
        "tags_probabilities": {"heavy": 0.9, "metal": 0.2, "wood": 0.6},
        "price": 12.5,
    }
    assert jsonl[1]["premium"] == "no" and jsonl[1]["shape"] == "circle" and jsonl[1]["tags"] == ""
    assert jsonl[1]["price"] is None  # not a number: null, never NaN (invalid JSON)
    csv_record = next(prediction_records(outputs, metadata, ["a"], "sku", "csv"))
    assert "shape_probabilities" not in csv_record and "tags_probabilities" not in csv_record
