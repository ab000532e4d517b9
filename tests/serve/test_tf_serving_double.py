"""TFServingDouble, the TF Serving stand-in: REST and gRPC answers equal the server's Session.run path.

Requests are built by hand (urllib, raw gRPC stubs), never with keras_mtmm's client, and compared with
`tf.compat.v1.saved_model.loader.load` + `Session.run` on the signature's tensor names.
"""

from __future__ import annotations

import base64
import json
import shutil
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format, text_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from keras_mtmm.export.warmup import read_warmup
from tests.support.tf_serving_double import TFServingDouble

DEFAULT = "serving_default"


@pytest.fixture(scope="module")
def bundle(tiny_run):
    """The export as the server loads it: (session, {signature name: SignatureDef})."""
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(tiny_run.export_path))
    yield session, dict(meta_graph.signature_def)
    session.close()


@pytest.fixture(scope="module")
def raw_inputs(tiny_run):
    """The largest warmup batch for serving_default: real raw inputs as arrays (PNG bytes, text, NaNs...)."""
    requests = [r for r in read_warmup(tiny_run.export_path) if r.model_spec.signature_name in ("", DEFAULT)]
    request = max(requests, key=lambda r: next(iter(r.inputs.values())).tensor_shape.dim[0].size)
    return {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}


@pytest.fixture(scope="module")
def server(tiny_run):
    with TFServingDouble(tiny_run.export_path.parent.parent / "models.config") as double:
        yield double


def session_run(bundle, signature_name, inputs):
    session, signatures = bundle
    signature = signatures[signature_name]
    names = sorted(signature.outputs)
    feed = {signature.inputs[name].name: value for name, value in inputs.items()}
    return dict(zip(names, session.run([signature.outputs[n].name for n in names], feed_dict=feed)))


def http(server, path, body=None, method=None):
    """(status, JSON answer) of one REST request."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def json_value(value, force_b64=False):
    """A raw input value as a REST client writes it: bytes that are not UTF-8 as {"b64": ...}."""
    if isinstance(value, np.ndarray):
        return [json_value(v, force_b64) for v in value]
    if isinstance(value, bytes):
        try:
            if not force_b64:
                return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
        return {"b64": base64.b64encode(value).decode("ascii")}
    return float(value)


def rows(inputs):
    size = len(next(iter(inputs.values())))
    return [{name: json_value(values[i]) for name, values in inputs.items()} for i in range(size)]


def grpc_stubs(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    return (
        channel,
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
    )


def predict_request(inputs, name="demo", signature_name=DEFAULT, **spec):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature_name
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def test_rest_row_and_column_forms_equal_session_run(server, bundle, raw_inputs):
    raw_inputs = {**raw_inputs, "numeric": raw_inputs["numeric"].copy()}
    raw_inputs["numeric"][0, 0] = np.nan  # a missing value travels as the JSON literal NaN
    expected = session_run(bundle, DEFAULT, raw_inputs)
    assert any(isinstance(v, dict) for row in rows(raw_inputs) for v in row.values())  # PNGs travel as b64
    assert "NaN" in json.dumps({"instances": rows(raw_inputs)})

    status, answer = http(server, "/v1/models/demo:predict", {"instances": rows(raw_inputs)})
    assert status == 200, answer
    assert len(answer["predictions"]) == len(raw_inputs["text"])
    for name, values in expected.items():
        served = np.array([row[name] for row in answer["predictions"]], dtype=np.float32)
        np.testing.assert_allclose(served, values, rtol=1e-5, atol=1e-6)

    # Column form, every string as b64 this time.
    columns = {name: json_value(values, force_b64=True) for name, values in raw_inputs.items()}
    status, answer = http(server, "/v1/models/demo/versions/1:predict", {"signature_name": DEFAULT, "inputs": columns})
    assert status == 200, answer
    assert sorted(answer["outputs"]) == sorted(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(np.array(answer["outputs"][name], dtype=np.float32), values, rtol=1e-5, atol=1e-6)


def test_grpc_predict_equals_session_run_and_names_the_version(server, bundle, raw_inputs):
    expected = session_run(bundle, DEFAULT, raw_inputs)
    channel, predictions, _ = grpc_stubs(server)
    with channel:
        response = predictions.Predict(predict_request(raw_inputs, signature_name=""), timeout=30)
        assert (response.model_spec.name, response.model_spec.version.value) == ("demo", 1)
        assert response.model_spec.signature_name == DEFAULT
        assert sorted(response.outputs) == sorted(expected)
        for name, values in expected.items():
            np.testing.assert_allclose(tf.make_ndarray(response.outputs[name]), values, rtol=1e-5, atol=1e-6)

        task = sorted(expected)[0]
        request = predict_request(raw_inputs, version=1)
        request.output_filter.append(task)
        filtered = predictions.Predict(request, timeout=30)
        assert list(filtered.outputs) == [task]


def test_single_output_signature_drops_the_output_name(server, bundle, raw_inputs):
    _, signatures = bundle
    single = sorted(k for k, s in signatures.items() if k.startswith("predict_") and len(s.outputs) == 1)
    if not single:
        pytest.skip("this export has no one-output predict_<task> signature")
    signature_name = single[0]
    [(output, values)] = session_run(bundle, signature_name, raw_inputs).items()
    body = {"signature_name": signature_name, "instances": rows(raw_inputs)}
    status, answer = http(server, "/v1/models/demo:predict", body)
    assert status == 200, answer
    np.testing.assert_allclose(np.array(answer["predictions"], dtype=np.float32), values, rtol=1e-5, atol=1e-6)
    body = {"signature_name": signature_name, "inputs": {k: json_value(v) for k, v in raw_inputs.items()}}
    status, answer = http(server, "/v1/models/demo:predict", body)
    assert status == 200 and isinstance(answer["outputs"], list), answer
    np.testing.assert_allclose(np.array(answer["outputs"], dtype=np.float32), values, rtol=1e-5, atol=1e-6)


def test_string_outputs_come_back_as_text(server, bundle, raw_inputs):
    _, signatures = bundle
    with_strings = sorted(
        k for k, s in signatures.items() if any(o.dtype == tf.string.as_datatype_enum for o in s.outputs.values())
    )
    if not with_strings:
        pytest.skip("this export has no signature with a string output")
    signature_name = with_strings[0]
    expected = session_run(bundle, signature_name, raw_inputs)
    status, answer = http(
        server, "/v1/models/demo:predict", {"signature_name": signature_name, "instances": rows(raw_inputs)}
    )
    assert status == 200, answer
    for name, values in expected.items():
        served = [row[name] for row in answer["predictions"]]
        if values.dtype == object:
            assert served == [v.decode("utf-8") for v in values]


def test_status_and_metadata(server, bundle):
    _, signatures = bundle
    available = {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    assert http(server, "/v1/models/demo") == (200, {"model_version_status": [available]})
    assert http(server, "/v1/models/demo/versions/1") == (200, {"model_version_status": [available]})

    status, answer = http(server, "/v1/models/demo/metadata")
    assert status == 200
    assert answer["model_spec"] == {"name": "demo", "signature_name": "", "version": "1"}
    served = answer["metadata"]["signature_def"]["signature_def"]
    assert set(served) == set(signatures)
    default = served[DEFAULT]
    assert default["method_name"] == "tensorflow/serving/predict"
    for name, info in signatures[DEFAULT].inputs.items():
        assert default["inputs"][name]["dtype"] == types_pb2.DataType.Name(info.dtype)  # e.g. "DT_STRING"
        sizes = [d["size"] for d in default["inputs"][name]["tensor_shape"]["dim"]]
        assert sizes == [str(d.size) for d in info.tensor_shape.dim]
    assert set(default["outputs"]) == set(signatures[DEFAULT].outputs)

    channel, predictions, models = grpc_stubs(server)
    with channel:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = "demo"
        response = predictions.GetModelMetadata(request, timeout=30)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        assert response.metadata["signature_def"].Unpack(signature_map)
        assert dict(signature_map.signature_def) == signatures
        assert (response.model_spec.name, response.model_spec.version.value) == ("demo", 1)

        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = "demo"
        statuses = models.GetModelStatus(status_request, timeout=30).model_version_status
        assert [(s.version, s.state) for s in statuses] == [(1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
        assert json_format.MessageToDict(statuses[0].status, always_print_fields_with_no_presence=True) == {
            "error_code": "OK",
            "error_message": "",
        }


def test_rest_errors_carry_the_servers_codes_and_messages(server, raw_inputs):
    one_row = rows({name: values[:1] for name, values in raw_inputs.items()})
    columns = {name: json_value(values) for name, values in raw_inputs.items()}
    not_found = {
        "/v1/models/nope:predict": "Servable not found for request: Latest(nope)",
        "/v1/models/demo/versions/9:predict": "Servable not found for request: Specific(demo, 9)",
    }
    for path, message in not_found.items():
        assert http(server, path, {"instances": one_row}) == (404, {"error": message})
    assert http(server, "/v1/models/nope") == (404, {"error": "Could not find any versions of model nope"})
    assert http(server, "/v1/models/demo/versions/9") == (404, {"error": "Could not find version 9 of model demo"})
    assert http(server, "/v1/models/demo/versions/9/metadata")[0] == 404

    def bad_request(path, body, method=None):
        status, answer = http(server, path, body, method)
        assert status == 400, answer
        return answer["error"]

    predict = "/v1/models/demo:predict"
    assert bad_request("/v1/models/demo/labels/nope:predict", {"instances": one_row}) == (
        "Unrecognized servable version label: nope"
    )
    assert bad_request(predict, {"signature_name": "x", "instances": one_row}) == (
        'Serving signature name: "x" not found in signature def'
    )
    assert bad_request(predict, b"{not json").startswith("JSON Parse error: ")
    assert "expecting only one of 'inputs' or 'instances' keys" in bad_request(
        predict, {"instances": one_row, "inputs": columns}
    )
    assert bad_request(predict, {"rows": one_row}) == "Missing 'inputs' or 'instances' key"
    missing = {name: value for name, value in one_row[0].items() if name != "numeric"}
    assert "keys must be equal to: categorical,image,numeric,text" in bad_request(predict, {"instances": [missing]})
    del columns["numeric"]
    assert bad_request(predict, {"inputs": columns}) == "Missing named input: numeric in 'inputs' object."
    wrong_type = {**one_row[0], "numeric": ["heavy", 1.0, 2.0]}
    message = bad_request(predict, {"instances": [wrong_type]})
    assert "key: numeric" in message and 'JSON Value: "heavy" Type: String is not of expected type: float' in message
    wrong_rank = {**one_row[0], "numeric": [[1.0, 2.0, 3.0]]}
    assert "Cannot feed value of shape (1, 1, 3)" in bad_request(predict, {"instances": [wrong_rank]})
    not_an_image = {**one_row[0], "image": {"b64": base64.b64encode(b"not a png").decode()}}
    assert "Unknown image file format" in bad_request(predict, {"instances": [not_an_image]})  # from Session.run
    assert bad_request(predict, None, method="GET") == "Malformed request: GET /v1/models/demo:predict"
    assert http(server, "/v2/models/demo")[0] == 404


def test_grpc_errors_carry_the_servers_status_codes(server, raw_inputs):
    channel, predictions, models = grpc_stubs(server)

    def code_and_message(call, request):
        with pytest.raises(grpc.RpcError) as caught:
            call(request, timeout=30)
        return caught.value.code(), caught.value.details()

    with channel:
        assert code_and_message(predictions.Predict, predict_request(raw_inputs, name="nope")) == (
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(nope)",
        )
        assert code_and_message(predictions.Predict, predict_request(raw_inputs, version=9)) == (
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(demo, 9)",
        )
        assert code_and_message(predictions.Predict, predict_request(raw_inputs, version_label="nope")) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: nope",
        )
        assert code_and_message(predictions.Predict, predict_request(raw_inputs, signature_name="x")) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "x" not found.',
        )
        missing = {name: value for name, value in raw_inputs.items() if name != "numeric"}
        code, message = code_and_message(predictions.Predict, predict_request(missing))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert (
            message.startswith("input size does not match signature: 3!=4")
            and "Missing but required: {numeric}" in message
        )
        wrong_type = {**raw_inputs, "numeric": raw_inputs["numeric"].astype(str).astype(object)}
        code, message = code_and_message(predictions.Predict, predict_request(wrong_type))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "to be float but string is provided" in message
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = "nope"
        assert code_and_message(models.GetModelStatus, status_request) == (
            grpc.StatusCode.NOT_FOUND,
            "Could not find any versions of model nope",
        )


def test_versions_labels_and_reload(tiny_run, tmp_path, raw_inputs):
    from keras_mtmm.export.repository import read_models_config, register_model, set_label

    export_dir = tmp_path / "models"
    for version in (1, 2):  # two versions of the same export: the answers say which one served
        shutil.copytree(tiny_run.export_path, export_dir / "demo" / str(version))
    config_file = register_model(export_dir, "demo")
    one_row = {"instances": rows({name: values[:1] for name, values in raw_inputs.items()})}

    def served_versions(server, path="/v1/models/demo"):
        status, answer = http(server, path)
        assert status == 200, answer
        return [int(s["version"]) for s in answer["model_version_status"]]

    def metadata_version(server, path):
        status, answer = http(server, f"{path}/metadata")
        assert status == 200, answer
        return int(answer["model_spec"]["version"])

    with TFServingDouble(config_file, grpc=True) as server:
        assert served_versions(server) == [2]  # latest { num_versions: 1 }
        assert http(server, "/v1/models/demo/versions/1:predict", one_row)[0] == 404

        set_label(export_dir, "demo", 1, "stable")  # policy becomes specific { 1, 2 }
        server.reload_config()
        assert served_versions(server) == [1, 2]
        assert served_versions(server, "/v1/models/demo/labels/stable") == [1, 2]  # the server ignores the label
        assert served_versions(server, "/v1/models/demo/versions/1") == [1]
        assert metadata_version(server, "/v1/models/demo/labels/stable") == 1
        assert metadata_version(server, "/v1/models/demo") == 2
        for path in ("/v1/models/demo/labels/stable:predict", "/v1/models/demo/versions/1:predict"):
            assert http(server, path, one_row)[0] == 200

        channel, predictions, _ = grpc_stubs(server)
        with channel:
            response = predictions.Predict(predict_request(raw_inputs, version_label="stable"), timeout=30)
            assert response.model_spec.version.value == 1

        # A label on a version the policy does not load: refused, and the previous state keeps serving.
        config = read_models_config(export_dir)
        config.model_config_list.config[0].model_version_policy.latest.num_versions = 1
        config_file.write_text(text_format.MessageToString(config))
        with pytest.raises(ValueError, match="label 'stable' to version 1 of model 'demo', which is not loaded"):
            server.reload_config()
        assert metadata_version(server, "/v1/models/demo/labels/stable") == 1
