"""The TF Serving repository: models.config, labels, pruning, templates, and warmup records replayed."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from keras_mtmm.errors import UserError
from keras_mtmm.export.repository import CONFIG_FILE, prune_versions, read_models_config, set_label
from keras_mtmm.export.warmup import SIGNATURE, read_warmup


def _parse(export_dir):
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((export_dir / CONFIG_FILE).read_text(), config)  # what the server parses
    return {entry.name: entry for entry in config.model_config_list.config}


def test_an_export_registers_its_model_with_a_latest_policy(tiny_run):
    export_dir = tiny_run.export_path.parent.parent
    entry = _parse(export_dir)["demo"]
    assert entry.base_path == str(tiny_run.export_path.parent.resolve())
    assert entry.model_platform == "tensorflow"
    assert entry.model_version_policy.latest.num_versions == 1  # no labels yet: the newest version is served
    assert "max_batch_size" in (export_dir / "batching_parameters.txt").read_text()
    assert "prometheus_config" in (export_dir / "monitoring.config").read_text()


def test_labels_pruning_and_policies(tiny_run, tmp_path):
    from keras_mtmm.export.saved_model import export_model

    export_dir = tmp_path / "models"
    exports = [
        export_model(tiny_run.model, tiny_run.preprocessor, "name: demo\n", {}, export_dir, "demo") for _ in range(4)
    ]
    assert [int(p.name) for p in exports] == [1, 2, 3, 4]
    assert _parse(export_dir)["demo"].model_version_policy.latest.num_versions == 1
    set_label(export_dir, "demo", 1, "stable")
    entry = _parse(export_dir)["demo"]
    assert dict(entry.version_labels) == {"stable": 1}
    assert list(entry.model_version_policy.specific.versions) == [1, 4]  # labelled + newest are loaded

    with pytest.raises(UserError, match="no version 9"):
        set_label(export_dir, "demo", 9, "canary")
    with pytest.raises(UserError, match="not a valid TF Serving label"):
        set_label(export_dir, "demo", 2, "can-ary")

    assert prune_versions(export_dir, "demo", keep=1) == [2, 3]  # 1 is labelled, 4 is the newest
    assert sorted(p.name for p in (export_dir / "demo").iterdir()) == ["1", "4"]
    export_model(tiny_run.model, tiny_run.preprocessor, "name: demo\n", {}, export_dir, "demo", labels=["canary"])
    entry = _parse(export_dir)["demo"]
    assert dict(entry.version_labels) == {"stable": 1, "canary": 5}
    assert list(entry.model_version_policy.specific.versions) == [1, 5]
    for version in entry.version_labels.values():  # labels point only at existing versions
        assert (export_dir / "demo" / str(version) / "saved_model.pb").is_file()
    assert read_models_config(export_dir).model_config_list.config[0].name == "demo"


def test_the_label_command(tiny_run, tmp_path, capsys):
    from keras_mtmm.cli.commands import main
    from keras_mtmm.export.saved_model import export_model

    export_dir = tmp_path / "models"
    export_model(tiny_run.model, tiny_run.preprocessor, "name: demo\n", {}, export_dir, "demo")
    assert main(["label", "demo", "1", "stable", "--export-dir", str(export_dir)]) == 0
    assert dict(_parse(export_dir)["demo"].version_labels) == {"stable": 1}
    assert main(["label", "demo", "7", "stable", "--export-dir", str(export_dir)]) == 2
    assert "no version 7" in capsys.readouterr().err


def test_warmup_records_name_each_signature_and_replay_through_the_servers_loader(tiny_run):
    requests = read_warmup(tiny_run.export_path)
    tasks = list(tiny_run.preprocessor.tasks)
    signatures = [SIGNATURE] + [f"predict_{task}" for task in tasks]
    assert [(r.model_spec.signature_name, r.inputs["text"].tensor_shape.dim[0].size) for r in requests] == [
        (signature, size) for signature in signatures for size in (1, 8)
    ]
    expected_inputs = set(tiny_run.preprocessor.modalities)
    served_per_request = []
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        # The TF1 bundle loader + Session.run on the signature's tensor names: tensorflow_model_server's path.
        bundle = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(tiny_run.export_path))
        for request in requests:
            signature = bundle.signature_def[request.model_spec.signature_name]
            assert request.model_spec.name == "demo"
            assert set(request.inputs) == expected_inputs == set(signature.inputs)
            feed = {signature.inputs[k].name: tf.make_ndarray(v) for k, v in request.inputs.items()}
            fetches = {name: info.name for name, info in signature.outputs.items()}
            served_per_request.append(session.run(fetches, feed_dict=feed))
    assert set(served_per_request[0]) == set(tasks)
    for request, served in zip(requests, served_per_request):
        raw = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        expected = tiny_run.model(tiny_run.preprocessor.transform(raw), training=False)
        signature = request.model_spec.signature_name
        for task in tasks if signature == SIGNATURE else [signature.removeprefix("predict_")]:
            np.testing.assert_allclose(served[task], np.asarray(expected[task]), rtol=1e-5, atol=1e-5)
