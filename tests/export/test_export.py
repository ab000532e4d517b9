"""The TF Serving export end to end: plain-TF reload equals the in-memory model; atomic versions."""

from __future__ import annotations

import base64
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml

from keras_mtmm.data.tables import load_splits
from keras_mtmm.errors import ExportError
from keras_mtmm.export.saved_model import existing_versions, export_model, next_version, read_export_metadata
from tests.conftest import REPO_ROOT

HERE = Path(__file__).resolve().parents[1]  # tests/


def test_export_layout_and_assets(tiny_run):
    path = tiny_run.export_path
    assert path.name == "1" and path.parent.name == "demo"
    for name in ("saved_model.pb", "variables/variables.index", "assets/vocabulary_text.txt"):
        assert (path / name).exists(), name
    config_yaml, metadata = read_export_metadata(path)
    assert yaml.safe_load(config_yaml)["name"] == "demo"
    assert metadata["version"] == 1
    assert metadata["tasks"]["premium"]["classes"] == ["no", "yes"]
    assert metadata["task_weights"] == tiny_run.task_weights
    assert not (path.parent.parent / ".tmp").exists(), "the staging folder is cleaned up"


def test_plain_tensorflow_reload_equals_in_memory_model(tiny_run, tmp_path):
    preprocessor = tiny_run.preprocessor
    splits = load_splits(_config(tiny_run))
    raw = tiny_run.preprocessor.raw_inputs(splits["test"])
    # A missing image, a missing text, a NaN number and an unseen category must be served too.
    raw["image"][0] = b""
    raw["text"][1] = ""
    raw["numeric"][2, 0] = np.nan
    raw["categorical"][3, 0] = "unobtainium"
    expected = tiny_run.model.predict(preprocessor.transform(raw), verbose=0)

    inputs_path, outputs_path = tmp_path / "inputs.pkl", tmp_path / "outputs.npz"
    inputs_path.write_bytes(pickle.dumps(raw))
    sizes = ["1", "7", str(len(raw["text"]))]
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / "support" / "plain_tf_predict.py"),
            str(tiny_run.export_path),
            str(inputs_path),
            str(outputs_path),
            *sizes,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = np.load(outputs_path)
    for loader in ("tf2", "tf1"):
        for size in sizes:
            for task in ("shape", "premium", "price"):
                got = outputs[f"{loader}__{size}__{task}"]
                np.testing.assert_allclose(
                    got, expected[task], rtol=1e-5, atol=1e-5, err_msg=f"{loader} batch {size} {task}"
                )


def _config(run):
    from keras_mtmm.config.loading import config_from_dict

    return config_from_dict(yaml.safe_load((run.run_dir / "config.yaml").read_text()))


def test_export_works_after_the_run_folder_is_gone(tiny_run, tmp_path):
    """The vocabulary travels in assets/: a copy of the export answers without the run folder."""
    import shutil

    import tensorflow as tf

    copy = tmp_path / "copy" / "1"
    shutil.copytree(tiny_run.export_path, copy)
    moved_run = tmp_path / "moved_run"
    shutil.move(str(tiny_run.run_dir / "preprocessor"), moved_run)
    try:
        serving = tf.saved_model.load(str(copy)).signatures["serving_default"]
        raw = tiny_run.preprocessor.raw_inputs(load_splits(_config(tiny_run))["test"])
        outputs = serving(**{name: tf.constant(value[:5]) for name, value in raw.items()})
        assert sorted(outputs) == ["premium", "price", "shape"]
        np.testing.assert_allclose(outputs["shape"].numpy().sum(axis=-1), 1.0, atol=1e-5)
    finally:
        shutil.move(str(moved_run), tiny_run.run_dir / "preprocessor")


def test_evaluate_script_writes_metrics_json_equal_to_in_process_scores(tiny_run, tmp_path):
    output = tmp_path / "metrics.json"
    result = subprocess.run(
        [sys.executable, "evaluate.py", "--model", str(tiny_run.export_path), "--output", str(output)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert set(report) == {"model", "split", "examples", "loss", "weights", "tasks"}
    assert report["split"] == "test" and report["examples"] == 48
    in_process = tiny_run.metrics  # scored in memory on the same split during training
    for task, values in in_process["tasks"].items():
        assert report["tasks"][task]["labelled"] == values["labelled"]
        for name, value in values.items():
            assert report["tasks"][task][name] == pytest.approx(value, rel=1e-4, abs=1e-5), (task, name)
    assert report["loss"] == pytest.approx(sum(report["weights"][t] * r["loss"] for t, r in report["tasks"].items()))
    assert "shape" in result.stdout and "total weighted loss" in result.stdout


def test_evaluate_a_keras_checkpoint(tiny_run, tmp_path):
    from keras_mtmm.evaluation.evaluate import evaluate_model

    report = evaluate_model(tiny_run.run_dir / "best.keras", split="test")
    for task, values in tiny_run.metrics["tasks"].items():
        assert report["tasks"][task]["loss"] == pytest.approx(values["loss"], rel=1e-4, abs=1e-6)


def test_versions_increment_and_never_overwrite(tiny_run, tmp_path):
    run = tiny_run
    config_yaml, metadata = read_export_metadata(run.export_path)
    first = export_model(run.model, run.preprocessor, config_yaml, metadata, tmp_path, "demo")
    second = export_model(run.model, run.preprocessor, config_yaml, metadata, tmp_path, "demo")
    assert (first.name, second.name) == ("1", "2")
    assert next_version(tmp_path / "demo") == 3
    with pytest.raises(ExportError, match="version 2 already exists"):
        export_model(run.model, run.preprocessor, config_yaml, metadata, tmp_path, "demo", version=2)


def test_interrupted_export_leaves_no_version_folder(tiny_run, tmp_path, monkeypatch):
    import keras_mtmm.export.saved_model as export_module

    run = tiny_run
    config_yaml, metadata = read_export_metadata(run.export_path)
    real_write = export_module.write_saved_model

    def write_then_die(model, preprocessor, path):
        real_write(model, preprocessor, path)  # a complete graph is on disk in the staging folder...
        raise KeyboardInterrupt  # ...when the process is interrupted before the rename

    monkeypatch.setattr(export_module, "write_saved_model", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        export_model(run.model, run.preprocessor, config_yaml, metadata, tmp_path, "demo")
    assert existing_versions(tmp_path / "demo") == []
    assert not any(tmp_path.rglob("saved_model.pb")), "no partial export is left anywhere"
    monkeypatch.undo()
    assert export_model(run.model, run.preprocessor, config_yaml, metadata, tmp_path, "demo").name == "1"


# (-m slow: a subprocess trains and is killed; staging and publishing are unit-tested in test_repository.py)
@pytest.mark.slow
def test_a_killed_exporter_never_shows_a_version(tiny_run, tmp_path):
    """SIGKILL during the write: what is left sits in .tmp/, which TF Serving never polls."""
    script = tmp_path / "export_and_die.py"
    script.write_text(
        "import os, signal, sys\n"
        "import keras_mtmm.export.saved_model as e\n"
        "real = e.write_saved_model\n"
        "def die(model, pre, path):\n"
        "    real(model, pre, path)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "e.write_saved_model = die\n"
        "from keras_mtmm.training.run import train\n"
        "from keras_mtmm.config.loading import load_config\n"
        f"config = load_config({str(tiny_run.run_dir / 'config.yaml')!r},"
        " ['training.epochs=1', 'training.steps_per_epoch=1'])\n"
        f"train(config, output_dir={str(tmp_path / 'run')!r}, export_dir={str(tmp_path / 'models')!r}, verbose=0)\n"
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == -9, result.stderr[-3000:]
    assert existing_versions(tmp_path / "models" / "demo") == []
    assert list((tmp_path / "models" / ".tmp").iterdir()), "the half-written export stayed in staging"


def test_inspect_lists_raw_inputs_and_named_outputs(tiny_run, capsys):
    from keras_mtmm.cli.commands import main

    assert main(["inspect", "--model", str(tiny_run.export_path)]) == 0
    shown = capsys.readouterr().out
    for line_start, dtype in (
        ("image", "string"),
        ("text", "string"),
        ("numeric", "float32"),
        ("categorical", "string"),
    ):
        assert any(line.split()[:2] == [line_start, dtype] for line in shown.splitlines()), shown
    assert "classes=['no', 'yes']" in shown
    assert "price" in shown


def test_evaluate_a_keras_checkpoint_in_a_fresh_process(tiny_run):
    """The checkpoint loads with no custom_objects in a process that imported nothing of ours yet."""
    result = subprocess.run(
        [sys.executable, "evaluate.py", "--model", str(tiny_run.run_dir / "best.keras"), "--split", "test"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loss = tiny_run.metrics["tasks"]["shape"]["loss"]
    shape_line = next(line for line in result.stdout.splitlines() if line.strip().startswith("shape"))
    assert float(shape_line.split()[3]) == pytest.approx(loss, abs=1e-4)


def test_inspect_names_every_signature(tiny_run, capsys):
    from keras_mtmm.cli.commands import main

    assert main(["inspect", "--model", str(tiny_run.export_path)]) == 0
    shown = capsys.readouterr().out
    for task in tiny_run.preprocessor.tasks:
        assert f"signature predict_{task} outputs:" in shown
    assert any(line.split()[:2] == ["shape_label", "string"] for line in shown.splitlines()), shown


def test_inspect_requests_prints_a_body_curl_and_grpc_call_from_the_warmup_records(tiny_run, capsys):
    import json
    import shlex

    from keras_mtmm.cli.commands import main
    from keras_mtmm.export.warmup import read_warmup

    assert main(["inspect", "--model", str(tiny_run.export_path), "--requests", "--signature", "predict_price"]) == 0
    shown = capsys.readouterr().out.splitlines()
    body = json.loads(shown[2])
    assert body["signature_name"] == "predict_price" and len(body["instances"]) == 1
    request = next(r for r in read_warmup(tiny_run.export_path) if r.model_spec.signature_name == "predict_price")
    instance = body["instances"][0]
    assert base64.b64decode(instance["image"]["b64"]) == tf.make_ndarray(request.inputs["image"])[0]
    assert instance["text"] == tf.make_ndarray(request.inputs["text"])[0].decode()
    np.testing.assert_allclose(instance["numeric"], tf.make_ndarray(request.inputs["numeric"])[0])
    curl = shlex.split(next(line for line in shown if line.startswith("curl ")))
    assert curl[curl.index("-X") + 2] == "http://localhost:8501/v1/models/demo/versions/1:predict"
    assert json.loads(curl[curl.index("-d") + 1]) == body
    assert any("request.model_spec.version.value = 1" in line for line in shown)
    assert main(["inspect", "--model", str(tiny_run.export_path), "--requests", "--signature", "nope"]) == 2


def test_export_command_re_exports_a_run_with_a_label(tiny_run, tmp_path, capsys):
    from keras_mtmm.cli.commands import main
    from keras_mtmm.export.repository import read_models_config
    from keras_mtmm.export.warmup import read_warmup

    repository = tmp_path / "models"
    assert main(["export", "--run", str(tiny_run.run_dir), "--export-dir", str(repository), "--label", "stable"]) == 0
    version = repository / "demo" / "1"
    entry = read_models_config(repository).model_config_list.config[0]
    assert dict(entry.version_labels) == {"stable": 1}
    request = read_warmup(version)[1]
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    again = tf.saved_model.load(str(version)).signatures["serving_default"](**inputs)
    original = tf.saved_model.load(str(tiny_run.export_path)).signatures["serving_default"](**inputs)
    for task in tiny_run.preprocessor.tasks:
        np.testing.assert_allclose(again[task].numpy(), original[task].numpy(), rtol=1e-6)
    assert main(["export", "--run", str(tmp_path / "missing")]) == 2
    assert "not a finished run folder" in capsys.readouterr().err


def test_saved_model_cli_shows_and_runs_every_signature(tiny_run, tmp_path):
    """The stock inspector: `show --all` lists the signatures, `run` answers like the in-memory model."""
    from keras_mtmm.export.warmup import read_warmup

    cli = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    export = str(tiny_run.export_path)
    shown = subprocess.run([*cli, "show", "--dir", export, "--all"], capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for task in tiny_run.preprocessor.tasks:
        assert f"signature_def['predict_{task}']" in shown.stdout
    assert "signature_def['serving_default']" in shown.stdout

    request = read_warmup(tiny_run.export_path)[1]
    raw = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
    for name, values in raw.items():
        np.save(tmp_path / f"{name}.npy", values)
    inputs = ";".join(f"{name}={tmp_path / name}.npy" for name in raw)
    out = tmp_path / "out"
    command = [*cli, "run", "--dir", export, "--tag_set", "serve", "--signature_def", "predict_shape"]
    ran = subprocess.run([*command, "--inputs", inputs, "--outdir", str(out)], capture_output=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    expected = tiny_run.model(tiny_run.preprocessor.transform(raw), training=False)["shape"]
    np.testing.assert_allclose(np.load(out / "shape.npy"), np.asarray(expected), rtol=1e-5, atol=1e-6)
    classes = np.array(tiny_run.preprocessor.classes("shape"))
    labels = np.load(out / "shape_label.npy", allow_pickle=True)
    assert [label.decode() for label in labels] == list(classes[np.argmax(expected, axis=-1)])
