"""What a run records and keeps: the split manifest (and the test predictions' row ids), `evaluate --data FILE`
(with `--baselines`: Δm on the file's rows), and finished runs that a rerun never replaces (`--overwrite`
replaces them)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.data.manifest import manifest_rows
from keras_mtmm.run_folder import RunFolder
from keras_mtmm.training.run import train

HEADER = ["x", "colour", "y", "price"]


def _write(path, rows):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def _rows(count: int, seed: int):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        x = float(rng.normal())
        label = "high" if x > 0 else "low"
        price = "" if rng.random() < 0.2 else f"{2 * x + 1:.3f}"  # some rows unlabelled
        rows.append([f"{x:.4f}", ["red", "blue"][int(rng.random() < 0.5)], label, price])
    return rows


def _raw(folder, **data):
    return {
        "name": "records",
        "seed": 4,
        "data": {"source": "csv", **data},
        "modalities": {
            "numbers": {"type": "numeric", "columns": ["x"]},
            "kind": {"type": "categorical", "columns": ["colour"]},
        },
        "sharing": {"shared_units": [8], "tower_units": [4]},
        "fusion": {"units": 8},
        "tasks": {
            "y": {"type": "binary", "label": "y", "classes": ["low", "high"]},
            "price": {"type": "regression", "label": "price"},
        },
        "training": {"epochs": 1, "batch_size": 16},
    }


@pytest.fixture(scope="module")
def split_file_run(tmp_path_factory):
    """One tiny run on split files: train.csv (48 rows, 20% cut as validation), test.csv (21 rows)."""
    folder = tmp_path_factory.mktemp("records")
    train_csv = _write(folder / "train.csv", _rows(48, seed=1))
    test_csv = _write(folder / "test.csv", _rows(21, seed=2))
    config = config_from_dict(_raw(folder, train=str(train_csv), test=str(test_csv), validation_fraction=0.2))
    result = train(config, output_dir=folder / "run", export_dir=folder / "models", verbose=0)
    return folder, config, result


def test_the_manifest_records_which_lines_went_to_which_split(split_file_run):
    folder, _, result = split_file_run
    manifest = RunFolder(result.run_dir).read_json(RunFolder.MANIFEST)
    train_csv, test_csv = str(folder / "train.csv"), str(folder / "test.csv")
    assert manifest_rows(manifest, "test") == {(test_csv, line) for line in range(2, 23)}  # 21 rows after the header
    train_rows, validation_rows = manifest_rows(manifest, "train"), manifest_rows(manifest, "validation")
    assert len(validation_rows) == 10 and len(train_rows) == 38  # round(48 * 0.2) cut from train
    assert train_rows | validation_rows == {(train_csv, line) for line in range(2, 50)}
    assert not train_rows & validation_rows
    assert all(entry["row_ids"] == "line" for entries in manifest["splits"].values() for entry in entries)


def test_the_test_predictions_carry_the_row_ids_of_the_rows_scored(split_file_run):
    import tensorflow as tf

    from keras_mtmm.data.tables import load_file
    from keras_mtmm.evaluation.scoring import raw_inputs

    folder, config, result = split_file_run
    manifest = RunFolder(result.run_dir).read_json(RunFolder.MANIFEST)
    with np.load(result.run_dir / "evaluation.npz") as dump:
        row_ids, row_files, predicted = dump["row_ids"], dump["row_files"], dump["y__predictions"]
    assert len(row_ids) == result.metrics["examples"] == 21
    assert set(zip(row_files.tolist(), row_ids.tolist())) == manifest_rows(manifest, "test")
    # each dumped prediction is the export's answer for the CSV line its id names
    table = load_file(folder / "test.csv", config)
    metadata = json.loads((result.export_path / "assets.extra" / "keras_mtmm_metadata.json").read_text())
    serving = tf.saved_model.load(str(result.export_path)).signatures["serving_default"]
    served = serving(**{k: tf.constant(v) for k, v in raw_inputs(table, metadata).items()})["y"].numpy()
    by_line = dict(zip(table.rows.tolist(), served[:, 0]))
    np.testing.assert_allclose(predicted[:, 0], [by_line[int(line)] for line in row_ids], rtol=1e-5, atol=1e-6)


def test_evaluate_data_scores_every_row_of_a_file_as_the_export_does(split_file_run, tmp_path, capsys):
    import tensorflow as tf

    from keras_mtmm.cli.commands import main
    from keras_mtmm.evaluation.scoring import encode_targets, raw_inputs, score_tasks

    folder, config, result = split_file_run
    held_out = _write(tmp_path / "held_out.csv", _rows(33, seed=9))
    output = tmp_path / "m.json"
    assert main(["evaluate", "--model", str(result.export_path), "--data", str(held_out), "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["examples"] == 33 and report["split"] == str(held_out)
    # the same rows through the export's serving signature, scored by hand
    from keras_mtmm.data.tables import load_file

    table = load_file(held_out, config)
    metadata = json.loads((result.export_path / "assets.extra" / "keras_mtmm_metadata.json").read_text())
    serving = tf.saved_model.load(str(result.export_path)).signatures["serving_default"]
    outputs = serving(**{k: tf.constant(v) for k, v in raw_inputs(table, metadata).items()})
    targets, masks = encode_targets(table, metadata)
    expected = score_tasks({t: outputs[t].numpy() for t in metadata["tasks"]}, targets, masks, metadata)
    assert report["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    for task, values in expected["tasks"].items():
        for name, value in values.items():
            assert report["tasks"][task][name] == pytest.approx(value, rel=1e-5, abs=1e-6), (task, name)
    assert report["tasks"]["price"]["labelled"] == int(masks["price"].sum()) < 33
    with np.load(tmp_path / "m.npz") as dump:
        assert dump["row_ids"].tolist() == list(range(2, 35))
    # the test file scored with --data gives the run's own test metrics
    assert main(["evaluate", "--model", str(result.export_path), "--data", str(folder / "test.csv")]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(result.export_path), "--data", str(held_out), "--split", "train"]) == 2
    assert capsys.readouterr().err.startswith("error: --data: scores a file, --split a split")


def _delta_m_by_hand(model, baselines, held_out):
    """compare() of the metrics JSONs that `evaluate --data held_out` writes for the model and each baseline."""
    from keras_mtmm.evaluation.evaluate import evaluate_model
    from keras_mtmm.evaluation.transfer import compare

    mtl = evaluate_model(model, data=held_out, quiet=True)
    single = {task: evaluate_model(baselines / task / "best.keras", data=held_out, quiet=True) for task in mtl["tasks"]}
    return compare(mtl, single)


def test_evaluate_data_with_baselines_scores_every_model_on_the_file(split_file_run, tmp_path, capsys):
    """`evaluate --data FILE --baselines DIR`: Δm of the model and the baselines, all scored on the file's rows."""
    from keras_mtmm.cli.commands import main
    from keras_mtmm.training.baselines import train_baselines

    folder, config, result = split_file_run
    held_out = _write(tmp_path / "held_out.csv", _rows(33, seed=9))
    baselines = tmp_path / "baselines"
    runs = train_baselines(config, baselines)[config.seed]
    output = tmp_path / "m.json"
    argv = ["evaluate", "--model", str(result.export_path), "--data", str(held_out), "--baselines", str(baselines)]
    assert main([*argv, "--output", str(output)]) == 0
    transfer = json.loads(output.read_text())["transfer"]
    expected = _delta_m_by_hand(result.export_path, baselines, held_out)
    assert transfer["delta_m"] == pytest.approx(expected["delta_m"], rel=1e-6, abs=1e-9)
    on_test_split = []  # each baseline's metric on its own test split (test.csv, 21 rows), from its training
    for task, entry in expected["tasks"].items():
        assert transfer["tasks"][task]["delta"] == pytest.approx(entry["delta"], rel=1e-6, abs=1e-9), task
        for metric, values in entry["metrics"].items():
            got = transfer["tasks"][task]["metrics"][metric]
            assert (got["mtl"], got["single"]) == pytest.approx((values["mtl"], values["single"]), rel=1e-6), metric
            on_test_split.append(got["single"] == pytest.approx(runs[task].metrics["tasks"][task][metric]))
    assert not all(on_test_split), "the baselines were scored on the file's 33 rows, not on their test split"
    assert "Δm" in capsys.readouterr().out


@pytest.mark.slow  # 4 more tiny runs, about 20 s on 2 cores
def test_evaluate_data_with_baselines_of_two_seeds_scores_both_seeds_on_the_file(split_file_run, tmp_path):
    import shutil

    from keras_mtmm.evaluation.evaluate import evaluate_model
    from keras_mtmm.training.baselines import train_baselines, train_other_seeds

    folder, config, result = split_file_run
    held_out = _write(tmp_path / "held_out.csv", _rows(33, seed=9))
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    seeds = [config.seed, config.seed + 1]
    train_other_seeds(config, run, seeds[1:])
    baselines = tmp_path / "baselines"
    train_baselines(config, baselines, seeds=seeds)
    transfer = evaluate_model(run / "best.keras", data=held_out, baselines=baselines, quiet=True)["transfer"]
    assert transfer["seeds"] == {"seeds": seeds, "pairing": f"seed by seed, all on {held_out}"}
    models = [run / "best.keras", run / "seeds" / f"seed-{seeds[1]}" / "best.keras"]
    by_hand = [_delta_m_by_hand(m, baselines / f"seed-{s}", held_out)["delta_m"] for m, s in zip(models, seeds)]
    assert transfer["delta_m_per_seed"] == pytest.approx(by_hand, rel=1e-6, abs=1e-9)


def test_a_rerun_into_a_finished_run_is_refused_and_replaces_nothing(split_file_run, capsys):
    from keras_mtmm.cli.commands import main

    folder, _, result = split_file_run
    config_path = folder / "config.yaml"
    config_path.write_text((result.run_dir / "config.yaml").read_text())
    before = {p.name: p.read_bytes() for p in result.run_dir.iterdir() if p.is_file()}
    status = main(["train", "--config", str(config_path), "--output-dir", str(result.run_dir), "--no-export"])
    line = capsys.readouterr().err.strip()
    assert status == 2
    assert line == (
        f"error: --output-dir: '{result.run_dir}' holds a finished run, which this run would replace; "
        "pass another --output-dir to keep it, or --overwrite to replace it (overwrite=True in Python)"
    )
    from keras_mtmm.errors import ConfigError

    with pytest.raises(ConfigError, match="holds a finished run"):
        train(_config_of(result), output_dir=result.run_dir, export=False, verbose=0)
    assert {p.name: p.read_bytes() for p in result.run_dir.iterdir() if p.is_file()} == before


def _config_of(result):
    import yaml

    return config_from_dict(yaml.safe_load((result.run_dir / "config.yaml").read_text()))


def test_overwrite_replaces_a_finished_run_and_a_run_without_test_says_so(split_file_run, tmp_path, capsys):
    import shutil

    folder, _, result = split_file_run
    run_dir = tmp_path / "run"
    shutil.copytree(result.run_dir, run_dir)
    (run_dir / "report").mkdir(exist_ok=True)
    config = config_from_dict(_raw(folder, train=str(folder / "train.csv"), validation_fraction=0.2))  # no test file
    capsys.readouterr()
    replaced = train(config, output_dir=run_dir, export=False, verbose=0, overwrite=True)
    out = capsys.readouterr().out
    assert f"replacing the run in {run_dir} (--overwrite)" in out
    assert "note: no test split (data.test is not set): no test metrics" in out
    assert replaced.metrics is None
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "evaluation.npz").exists()  # the old run's
    assert not (run_dir / "report").exists()
    assert manifest_rows(RunFolder(run_dir).read_json(RunFolder.MANIFEST), "test") == set()
