"""ServingClient end to end, against the TF Serving test double (tests/support/tf_serving_double.py).

The double answers through the TF1 bundle loader + Session.run, the path
tensorflow_model_server takes; the live-server test (test_serving_live.py)
runs the same checks against the real binary where it is installed.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from keras_mtmm.serve.client import RequestError, ServingClient, ServingTimeout, ServingUnavailable
from keras_mtmm.training.launch import find_ports
from tests.support.tf_serving_double import TFServingDouble


def build_repository(tiny_run, root):
    """Two versions of the demo model (v2 has perturbed weights), labels stable=1, canary=2.

    Returns (root, raw inputs of 6 validation rows, {version: in-process outputs on them}).
    """
    from keras_mtmm.data.tables import as_table, load_splits
    from keras_mtmm.export.repository import set_label
    from keras_mtmm.export.saved_model import export_model
    from keras_mtmm.run_folder import load_checkpoint

    table = as_table(load_splits(_config(tiny_run))["validation"], 6)
    raw = tiny_run.preprocessor.raw_inputs(table)
    export_model(tiny_run.model, tiny_run.preprocessor, "name: demo\n", {}, root, "demo", warmup_inputs=raw)
    changed = load_checkpoint(tiny_run.run_dir / "best.keras")
    network = getattr(changed, "network", changed)
    network.set_weights([w * 0.7 + 0.05 for w in network.get_weights()])
    export_model(network, tiny_run.preprocessor, "name: demo\n", {}, root, "demo", warmup_inputs=raw)
    set_label(root, "demo", 1, "stable")
    set_label(root, "demo", 2, "canary")
    expected = {
        1: _in_process(tiny_run.model, tiny_run.preprocessor, raw),
        2: _in_process(network, tiny_run.preprocessor, raw),
    }
    return root, raw, expected


@pytest.fixture(scope="module")
def repository(tiny_run, tmp_path_factory):
    return build_repository(tiny_run, tmp_path_factory.mktemp("serving_repository"))


@pytest.fixture(scope="module")
def server(repository):
    root, _, _ = repository
    with TFServingDouble(root / "models.config") as double:
        yield double


def _config(run):
    import yaml

    from keras_mtmm.config.loading import config_from_dict

    return config_from_dict(yaml.safe_load((run.run_dir / "config.yaml").read_text()))


def _in_process(network, preprocessor, raw):
    outputs = network(preprocessor.transform(raw), training=False)
    return {task: np.asarray(value) for task, value in outputs.items()}


def _rows(raw) -> list[dict]:
    """Raw serving inputs as the Python values a user has: bytes, str, lists of floats and strings."""
    rows = len(raw["text"])
    return [{name: _plain(values[row]) for name, values in raw.items()} for row in range(rows)]


def _plain(value):
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, bytes | np.bytes_):
        return bytes(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _client(server, **options):
    return ServingClient(
        "127.0.0.1", rest_port=server.rest_port, grpc_port=server.grpc_port, model="demo", timeout=5, **options
    )


def _text_rows(raw) -> list[dict]:
    """Rows whose text is a str (as users pass it) and image stays bytes."""
    rows = _rows(raw)
    for row in rows:
        row["text"] = _text(row["text"])
        row["categorical"] = [_text(value) for value in row["categorical"]]
    assert all(isinstance(row["image"], bytes) for row in rows)
    return rows


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.mark.parametrize("transport, form", [("rest", "row"), ("rest", "column"), ("grpc", "row")])
def test_predict_equals_the_in_process_model(server, repository, transport, form):
    _, raw, expected = repository
    rows = _text_rows(raw)
    with _client(server, transport=transport, form=form, version=1) as client:
        answer = client.predict(rows)
    assert set(answer) == set(expected[1])
    for task, value in expected[1].items():
        assert answer[task].dtype == np.float32
        np.testing.assert_allclose(answer[task], value, rtol=1e-5, atol=1e-6)


def test_a_dict_of_columns_and_image_paths(server, repository, tmp_path):
    _, raw, expected = repository
    rows = _text_rows(raw)
    for number, row in enumerate(rows):  # images as files: the client reads them and sends b64
        path = tmp_path / f"image_{number}.png"
        path.write_bytes(row["image"])
        row["image"] = path
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    answer = _client(server, version=1, form="column").predict(columns)
    np.testing.assert_allclose(answer["shape"], expected[1]["shape"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("transport, form", [("rest", "row"), ("rest", "column"), ("grpc", "row")])
def test_task_signatures_return_class_names_and_single_outputs(server, repository, tiny_run, transport, form):
    _, raw, expected = repository
    rows = _text_rows(raw)
    client = _client(server, transport=transport, form=form, version=1)
    shape = client.predict(rows, signature="predict_shape")
    assert set(shape) == {"shape", "shape_label"}
    classes = np.array(tiny_run.preprocessor.classes("shape"), dtype=object)
    assert list(shape["shape_label"]) == list(classes[np.argmax(expected[1]["shape"], axis=-1)])
    # One output: TF Serving's REST answer drops the output name; the client restores it.
    price = client.predict(rows, signature="predict_price")
    assert set(price) == {"price"}
    np.testing.assert_allclose(price["price"], expected[1]["price"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_versions_and_labels_select_the_model(server, repository, transport):
    _, raw, expected = repository
    rows = _text_rows(raw)
    assert not np.allclose(expected[1]["price"], expected[2]["price"])
    for selection, version in (({"version": 2}, 2), ({"label": "stable"}, 1), ({"label": "canary"}, 2), ({}, 2)):
        answer = _client(server, transport=transport, **selection).predict(rows)
        np.testing.assert_allclose(answer["price"], expected[version]["price"], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="version or label"):
        ServingClient(version=1, label="stable")


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_status_and_metadata(server, transport):
    client = _client(server, transport=transport)
    versions = {entry["version"]: entry["state"] for entry in client.status()}
    assert versions == {1: "AVAILABLE", 2: "AVAILABLE"}
    signatures = client.metadata()
    assert {"serving_default", "predict_shape", "predict_price", "predict_premium"} <= set(signatures)
    inputs = signatures["serving_default"]["inputs"]
    assert inputs["numeric"] == {"dtype": "DT_FLOAT", "shape": [-1, 3]}
    assert inputs["image"] == {"dtype": "DT_STRING", "shape": [-1]}
    assert signatures["predict_shape"]["outputs"]["shape_label"]["dtype"] == "DT_STRING"


def test_local_validation_names_the_input_and_row(server, repository):
    _, raw, _ = repository
    client = _client(server, version=1)
    rows = _text_rows(raw)
    missing = [{k: v for k, v in row.items() if k != "numeric"} for row in rows]
    with pytest.raises(RequestError, match="input 'numeric' is missing"):
        client.predict(missing)
    wrong_type = [dict(row) for row in rows]
    wrong_type[1]["numeric"] = [1.0, "heavy", 2.0]
    with pytest.raises(RequestError, match=r"input 'numeric' row 1: expected a number, got str 'heavy'"):
        client.predict(wrong_type)
    wrong_type = [dict(row, text=3.5) for row in rows]
    with pytest.raises(RequestError, match=r"input 'text' row 0: expected a string"):
        client.predict(wrong_type)
    narrow = [dict(row, numeric=[1.0, 2.0]) for row in rows]
    with pytest.raises(RequestError, match="expected 3 values, got 2"):
        client.predict(narrow)
    with pytest.raises(RequestError, match="unknown input 'colour'"):
        client.predict([dict(row, colour="red") for row in rows])
    with pytest.raises(RequestError, match="signature 'predict_nothing' not found"):
        client.predict(rows, signature="predict_nothing")


def test_missing_values_are_sent_as_missing(server, repository):
    _, raw, _ = repository
    rows = _text_rows(raw)
    rows[0].update(image=None, text=None, numeric=[None, None, None], categorical=[None, None])
    answer = _client(server, version=1).predict(rows)  # the model scores a row with every modality missing
    assert np.all(np.isfinite(answer["price"]))


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_the_servers_4xx_message_reaches_the_caller(server, repository, transport):
    _, raw, _ = repository
    rows = _text_rows(raw)
    client = _client(server, transport=transport, version=1, validate=False)
    with pytest.raises(RequestError) as caught:
        client.predict([{k: v for k, v in row.items() if k != "numeric"} for row in rows])
    assert caught.value.status in (400, "INVALID_ARGUMENT")
    assert "numeric" in caught.value.server_message and "numeric" in str(caught.value)
    wrong = [dict(row, numeric=["a", "b", "c"]) for row in rows]
    with pytest.raises(RequestError) as caught:
        client.predict(wrong)
    assert caught.value.status in (400, "INVALID_ARGUMENT") and caught.value.server_message
    with pytest.raises(RequestError) as caught:
        _client(server, transport=transport, version=9).predict(rows)
    assert caught.value.status in (404, "NOT_FOUND") and "9" in caught.value.server_message


def test_the_inspect_requests_body_is_what_the_server_takes(server, repository, capsys):
    """`mtmm inspect --requests` prints a body that the REST API answers as the client's own request."""
    import urllib.request

    from keras_mtmm.cli.commands import main

    root, _, _ = repository
    assert (
        main(["inspect", "--model", str(root / "demo" / "1"), "--requests", "--rest-port", str(server.rest_port)]) == 0
    )
    shown = capsys.readouterr().out.splitlines()
    url = shown[0].split()[-1].replace("localhost", "127.0.0.1")
    request = urllib.request.Request(url, data=shown[2].encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        predictions = json.loads(response.read())["predictions"]
    assert set(predictions[0]) == {"shape", "premium", "price"}


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_dead_server_fails_after_the_configured_retries(transport):
    port = find_ports(1)[0]  # nothing listens here
    client = ServingClient(
        "127.0.0.1", rest_port=port, grpc_port=port, transport=transport, timeout=1, retries=2, backoff=0.05
    )
    started = time.perf_counter()
    with pytest.raises(ServingUnavailable, match="gave up after 3 attempts"):
        client.status()
    assert time.perf_counter() - started < 3 * 1 + 0.05 + 0.1 + 2  # bounded: attempts x timeout + backoff


def test_a_silent_server_times_out_after_the_retries():
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        client = ServingClient("127.0.0.1", rest_port=port, timeout=0.3, retries=2, backoff=0.05)
        started = time.perf_counter()
        with pytest.raises(ServingTimeout, match="no answer within 0.3 s .gave up after 3 attempts"):
            client.status()
        elapsed = time.perf_counter() - started
    assert 0.9 <= elapsed < 3


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 for the first `failures` requests, then a status answer."""

    failures = 0
    seen = 0

    def do_GET(self):
        type(self).seen += 1
        if type(self).seen <= type(self).failures:
            body, code = json.dumps({"error": "overloaded"}).encode(), 503
        else:
            body, code = json.dumps({"model_version_status": [{"version": "1", "state": "AVAILABLE"}]}).encode(), 200
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("failures, retries, succeeds", [(2, 3, True), (5, 2, False)])
def test_5xx_answers_are_retried_with_backoff(failures, retries, succeeds):
    handler = type("Flaky", (_Flaky,), {"failures": failures, "seen": 0})
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        client = ServingClient("127.0.0.1", rest_port=http.server_address[1], retries=retries, backoff=0.01)
        if succeeds:
            assert client.status()[0]["state"] == "AVAILABLE"
            assert handler.seen == failures + 1
        else:
            with pytest.raises(ServingUnavailable) as caught:
                client.status()
            assert caught.value.status == 503 and caught.value.server_message == "overloaded"
            assert handler.seen == retries + 1
    finally:
        http.shutdown()
        http.server_close()


def test_bad_client_options():
    with pytest.raises(ValueError, match="transport"):
        ServingClient(transport="http2")
    with pytest.raises(ValueError, match="form"):
        ServingClient(form="table")
    with pytest.raises(RequestError, match="no examples"):
        ServingClient(validate=False).predict([])


def test_large_requests_are_split_into_batches(server, repository):
    _, raw, expected = repository
    rows = _text_rows(raw)
    whole = _client(server, version=1, batch_size=None).predict(rows)
    split = _client(server, version=1, batch_size=4).predict(rows)  # 6 rows: requests of 4 and 2
    for task in expected[1]:
        np.testing.assert_allclose(split[task], whole[task], rtol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        ServingClient(batch_size=0)
