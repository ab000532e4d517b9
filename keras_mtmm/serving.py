"""A client for TensorFlow Serving: raw Python values in, numpy arrays keyed by output name out.

    client = ServingClient("localhost", model="demo", label="stable")
    client.predict([{"image": Path("cat.png"), "text": "a red ball", "numeric": [1.0, 2.0, 0.5],
                     "categorical": ["wood", "small"]}])
    # {"shape": array([[...]], dtype=float32), "premium": ..., "price": ...}

The same interface runs over REST (`transport="rest"`, JSON on port 8501,
row form `{"instances": [...]}` or column form `{"inputs": {...}}`) and gRPC
(`transport="grpc"`, `PredictionService` on port 8500, from
tensorflow-serving-api).

Examples are a list of rows (dicts keyed by input name) or a dict of columns.
Values are what the export's signature takes: `bytes` (e.g. encoded image
bytes; sent as `{"b64": ...}` over REST) or a `pathlib.Path` (read as bytes),
`str` for text, numbers for float inputs (None = NaN = missing), and lists of
those for inputs with a column dimension (numeric and categorical modalities).

Before sending, the request is checked against the signature's metadata (fetched
once per signature): a missing or unknown input, a string where a number is
expected (or the reverse), or a row of the wrong width is a `RequestError`
naming the input and row, so the server never sees it. `validate=False` skips
this (the server then answers 400 / INVALID_ARGUMENT, also a `RequestError`
carrying the server's message).

Unavailable servers (connection refused, HTTP 5xx, gRPC UNAVAILABLE) and
timeouts are retried `retries` times with exponential backoff
(`backoff * 2**attempt` seconds), then raise `ServingUnavailable` (or its
subclass `ServingTimeout`). Each attempt waits at most `timeout` seconds.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

DEFAULT_SIGNATURE = "serving_default"
TRANSPORTS = ("rest", "grpc")
FORMS = ("row", "column")
# TF DataType names -> numpy dtypes; strings come back as Python str (object arrays).
DTYPES = {
    "DT_STRING": object,
    "DT_FLOAT": np.float32,
    "DT_DOUBLE": np.float64,
    "DT_HALF": np.float16,
    "DT_INT8": np.int8,
    "DT_INT16": np.int16,
    "DT_INT32": np.int32,
    "DT_INT64": np.int64,
    "DT_UINT8": np.uint8,
    "DT_BOOL": np.bool_,
}
_RETRY_GRPC_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")


class ServingError(Exception):
    """A request TF Serving did not answer with predictions.

    Attributes:
        status: the HTTP status or gRPC status code name (None for local errors).
        server_message: the server's own error text, when it sent one.
    """

    def __init__(self, message: str, status=None, server_message: str | None = None):
        super().__init__(message)
        self.status = status
        self.server_message = server_message


class RequestError(ServingError, ValueError):
    """The request is wrong (found locally, or a 4xx / INVALID_ARGUMENT / NOT_FOUND from the server)."""


class ServingUnavailable(ServingError):
    """The server did not answer after every retry (refused, 5xx, UNAVAILABLE)."""


class ServingTimeout(ServingUnavailable):
    """The last attempt ran past the timeout."""


class ServingClient:
    """Talks to one model on one TF Serving server, over REST or gRPC.

    Args:
        host: the server's host name.
        rest_port: the REST API port (tensorflow_model_server --rest_api_port; 8501 by convention).
        grpc_port: the gRPC port (--port; 8500).
        model: the model name (its entry in models.config).
        version: a specific version number; or
        label: a version label (e.g. "stable"); neither = the newest version the server has loaded.
        signature: the default signature for `predict` (e.g. "predict_price").
        transport: "rest" or "grpc".
        form: REST request form, "row" (`instances`) or "column" (`inputs`).
        timeout: seconds one attempt may take.
        retries: extra attempts after an unavailable server or a timeout.
        backoff: seconds before the first retry; doubled for each next one.
        validate: check each request against the signature's metadata before sending it.
        batch_size: most rows per request; more are sent as several requests and the answers joined
            (with --enable_batching the server refuses a request above its max_batch_size, 64 in
            the repository's batching_parameters.txt). None = one request.
    """

    def __init__(
        self,
        host: str = "localhost",
        rest_port: int = 8501,
        grpc_port: int = 8500,
        model: str = "demo",
        version: int | None = None,
        label: str | None = None,
        signature: str = DEFAULT_SIGNATURE,
        transport: str = "rest",
        form: str = "row",
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        validate: bool = True,
        batch_size: int | None = 64,
    ):
        if version is not None and label is not None:
            raise ValueError("ServingClient: pass version or label, not both")
        if transport not in TRANSPORTS:
            raise ValueError(f"ServingClient: transport must be one of {TRANSPORTS}, got {transport!r}")
        if form not in FORMS:
            raise ValueError(f"ServingClient: form must be one of {FORMS}, got {form!r}")
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ValueError("ServingClient: timeout must be > 0, retries and backoff >= 0")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"ServingClient: batch_size must be >= 1 or None, got {batch_size}")
        self.batch_size = batch_size
        self.host, self.rest_port, self.grpc_port = host, rest_port, grpc_port
        self.model, self.version, self.label = model, version, label
        self.signature, self.transport, self.form = signature, transport, form
        self.timeout, self.retries, self.backoff, self.validate = timeout, retries, backoff, validate
        self._metadata: dict | None = None
        self._channel = None

    # ------------------------------------------------------------------ public

    def predict(self, examples, signature: str | None = None) -> dict[str, np.ndarray]:
        """Run `examples` (rows: list of dicts; or columns: dict of lists) through a signature."""
        signature = signature or self.signature
        columns = _as_columns(examples)
        spec = None
        if self.validate:
            spec = self.metadata().get(signature)
            if spec is None:
                raise RequestError(f"signature '{signature}' not found; the model has {', '.join(self.metadata())}")
            columns = check_inputs(columns, spec["inputs"])
        else:
            columns = {name: [_read_paths(value) for value in values] for name, values in columns.items()}
        send = self._grpc_predict if self.transport == "grpc" else self._rest_predict
        rows = len(next(iter(columns.values()))) if columns else 0
        step = self.batch_size or max(rows, 1)
        if rows <= step:
            return send(columns, signature, spec)
        parts = [
            send({name: values[start : start + step] for name, values in columns.items()}, signature, spec)
            for start in range(0, rows, step)
        ]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def status(self) -> list[dict]:
        """The versions the server has for this model: [{"version", "state", "error_code", "error_message"}]."""
        if self.transport == "grpc":
            return self._grpc_status()
        answer = self._rest("GET", self._rest_path())
        return [
            {
                "version": int(entry["version"]),
                "state": entry["state"],
                "error_code": entry.get("status", {}).get("error_code", "OK"),
                "error_message": entry.get("status", {}).get("error_message", ""),
            }
            for entry in answer.get("model_version_status", [])
        ]

    def metadata(self) -> dict:
        """Signatures of the selected version: {name: {"inputs": {input: {"dtype", "shape"}}, "outputs": {...}}}.

        Fetched once and cached; dtypes are TF names (DT_STRING, DT_FLOAT, ...), shapes use -1 for any size.
        """
        if self._metadata is None:
            if self.transport == "grpc":
                self._metadata = self._grpc_metadata()
            else:
                answer = self._rest("GET", self._rest_path() + "/metadata")
                signatures = answer["metadata"]["signature_def"]["signature_def"]
                self._metadata = {name: _signature_from_json(sig) for name, sig in signatures.items()}
        return self._metadata

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # ------------------------------------------------------------------ REST

    def _rest_path(self) -> str:
        path = f"/v1/models/{self.model}"
        if self.version is not None:
            path += f"/versions/{int(self.version)}"
        elif self.label is not None:
            path += f"/labels/{self.label}"
        return path

    def _rest_predict(self, columns: dict, signature: str, spec: dict | None) -> dict[str, np.ndarray]:
        if self.form == "row":
            rows = len(next(iter(columns.values()))) if columns else 0
            body = {
                "signature_name": signature,
                "instances": [{name: _json_value(values[i]) for name, values in columns.items()} for i in range(rows)],
            }
        else:
            body = {
                "signature_name": signature,
                "inputs": {name: [_json_value(v) for v in values] for name, values in columns.items()},
            }
        answer = self._rest("POST", self._rest_path() + ":predict", body)
        outputs = spec["outputs"] if spec else None
        if "predictions" in answer:
            predictions = answer["predictions"]
            if predictions and isinstance(predictions[0], dict):
                names = list(predictions[0])
                raw = {name: [row[name] for row in predictions] for name in names}
            else:
                raw = {_single_output(outputs, answer): predictions}
        elif "outputs" in answer:
            raw = answer["outputs"] if isinstance(answer["outputs"], dict) else None
            if raw is None:
                raw = {_single_output(outputs, answer): answer["outputs"]}
        else:
            raise ServingError(f"unexpected answer from the server: {str(answer)[:200]}")
        return {name: _to_array(values, (outputs or {}).get(name, {}).get("dtype")) for name, values in raw.items()}

    def _rest(self, method: str, path: str, body: dict | None = None) -> dict:
        url = f"http://{self.host}:{self.rest_port}{path}"
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})

        def attempt():
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as error:
                message = _server_message(error.read())
                where = f"{method} {path}"
                if error.code >= 500:
                    error = ServingUnavailable(f"{where}: HTTP {error.code}: {message}", error.code, message)
                    raise _Retry(error) from None
                raise RequestError(f"{where}: HTTP {error.code}: {message}", error.code, message) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException) as error:
                reason = getattr(error, "reason", error)
                if isinstance(reason, TimeoutError):
                    timeout = ServingTimeout(f"{method} {url}: no answer within {self.timeout} s", "timeout")
                    raise _Retry(timeout) from None
                raise _Retry(ServingUnavailable(f"{method} {url}: {reason}", "unavailable")) from error

        return self._with_retries(attempt)

    # ------------------------------------------------------------------ gRPC

    def _stubs(self):
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        if self._channel is None:
            limit = 256 * 1024 * 1024
            self._channel = grpc.insecure_channel(
                f"{self.host}:{self.grpc_port}",
                options=[("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)],
            )
        return (
            prediction_service_pb2_grpc.PredictionServiceStub(self._channel),
            model_service_pb2_grpc.ModelServiceStub(self._channel),
        )

    def _model_spec(self, spec, signature: str | None = None) -> None:
        spec.name = self.model
        if self.version is not None:
            spec.version.value = int(self.version)
        elif self.label is not None:
            spec.version_label = self.label
        if signature is not None:
            spec.signature_name = signature

    def _grpc_predict(self, columns: dict, signature: str, spec: dict | None) -> dict[str, np.ndarray]:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, signature)
        for name, values in columns.items():
            dtype = spec["inputs"][name]["dtype"] if spec else None
            request.inputs[name].CopyFrom(tf.make_tensor_proto(_tensor_values(values, dtype)))
        predict, _ = self._stubs()
        response = self._grpc_call(predict.Predict, request, "Predict")
        outputs = {}
        for name, proto in response.outputs.items():
            array = tf.make_ndarray(proto)
            if array.dtype == object:
                array = np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(array)
            outputs[name] = array
        return outputs

    def _grpc_status(self) -> list[dict]:
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._model_spec(request.model_spec)
        _, models = self._stubs()
        response = self._grpc_call(models.GetModelStatus, request, "GetModelStatus")
        states = get_model_status_pb2.ModelVersionStatus.State
        return [
            {
                "version": int(entry.version),
                "state": states.Name(entry.state),
                "error_code": _grpc_code_name(entry.status.error_code),
                "error_message": entry.status.error_message,
            }
            for entry in response.model_version_status
        ]

    def _grpc_metadata(self) -> dict:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._model_spec(request.model_spec)
        request.metadata_field.append("signature_def")
        predict, _ = self._stubs()
        response = self._grpc_call(predict.GetModelMetadata, request, "GetModelMetadata")
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return {
            name: _signature_from_json(json_format.MessageToDict(sig, preserving_proto_field_name=True))
            for name, sig in signatures.signature_def.items()
        }

    def _grpc_call(self, method, request, name: str):
        import grpc

        where = f"{name} {self.host}:{self.grpc_port}"

        def attempt():
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as error:
                code = error.code().name if error.code() else "UNKNOWN"
                message = error.details() or ""
                if code == "DEADLINE_EXCEEDED":
                    raise _Retry(ServingTimeout(f"{where}: no answer within {self.timeout} s", code, message)) from None
                if code in _RETRY_GRPC_CODES:
                    raise _Retry(ServingUnavailable(f"{where}: {code}: {message}", code, message)) from None
                raise RequestError(f"{where}: {code}: {message}", code, message) from None

        return self._with_retries(attempt)

    # ------------------------------------------------------------------ retries

    def _with_retries(self, attempt):
        for number in range(self.retries + 1):
            try:
                return attempt()
            except _Retry as retry:
                last = retry.error
                if number < self.retries:
                    time.sleep(self.backoff * 2**number)
        attempts = self.retries + 1
        message = f"{last} (gave up after {attempts} attempt{'s' * (attempts > 1)})"
        raise type(last)(message, last.status, last.server_message) from None


class _Retry(Exception):
    def __init__(self, error: ServingError):
        super().__init__(str(error))
        self.error = error


# ---------------------------------------------------------------------- requests


def check_inputs(columns: dict[str, list], inputs: dict[str, dict]) -> dict[str, list]:
    """Check columns of raw values against a signature's inputs; raise `RequestError` naming input and row.

    Returns the columns with `pathlib.Path` values read as bytes and None made missing ("" or NaN).
    """
    missing = [name for name in inputs if name not in columns]
    if missing:
        raise RequestError(
            f"input {', '.join(map(repr, missing))} is missing; the signature takes {', '.join(inputs)}"
            " (use '' / None for a missing value)"
        )
    unknown = [name for name in columns if name not in inputs]
    if unknown:
        raise RequestError(f"unknown input {', '.join(map(repr, unknown))}; the signature takes {', '.join(inputs)}")
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise RequestError(f"inputs have different numbers of rows: {lengths}")
    checked = {}
    for name, spec in inputs.items():
        inner = spec["shape"][1:] if spec["shape"] is not None else None
        kind = "string" if spec["dtype"] == "DT_STRING" else "number"
        checked[name] = [
            _check_value(value, inner, kind, f"input '{name}' row {row}") for row, value in enumerate(columns[name])
        ]
    return checked


def _check_value(value, inner: list[int] | None, kind: str, where: str):
    if inner is None:  # unknown rank: check the leaves only
        if isinstance(value, (list, tuple, np.ndarray)) and np.ndim(value) > 0:
            return [_check_value(item, None, kind, where) for item in value]
        return _check_value(value, [], kind, where)
    if inner:
        if isinstance(value, (str, bytes, Path)) or not hasattr(value, "__len__"):
            raise RequestError(f"{where}: expected a list of {inner[0] if inner[0] > 0 else 'any number of'} values")
        if inner[0] > 0 and len(value) != inner[0]:
            raise RequestError(f"{where}: expected {inner[0]} values, got {len(value)}")
        return [_check_value(item, inner[1:], kind, where) for item in value]
    if isinstance(value, (list, tuple, np.ndarray)) and np.ndim(value) > 0:
        raise RequestError(f"{where}: expected a single {kind}, got a list")
    if kind == "string":
        if value is None:
            return ""
        if isinstance(value, Path):
            try:
                return value.read_bytes()
            except OSError as error:
                raise RequestError(f"{where}: cannot read {value}: {error.strerror}") from None
        if isinstance(value, np.str_ | np.bytes_):
            return value.item()
        if not isinstance(value, (str, bytes)):
            raise RequestError(f"{where}: expected a string (DT_STRING), got {type(value).__name__} {value!r}")
        return value
    if value is None:
        return math.nan
    if isinstance(value, (str, bytes, Path)):
        raise RequestError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RequestError(f"{where}: expected a number, got {type(value).__name__} {value!r}") from None


def _read_paths(value):
    if isinstance(value, Path):
        return value.read_bytes()
    if isinstance(value, (list, tuple)):
        return [_read_paths(item) for item in value]
    return value


def _as_columns(examples) -> dict[str, list]:
    if isinstance(examples, dict):
        return {name: [_plain(v) for v in values] for name, values in examples.items()}
    rows = list(examples)
    if not rows:
        raise RequestError("no examples to predict")
    if not all(isinstance(row, dict) for row in rows):
        raise RequestError("examples must be a list of dicts keyed by input name, or a dict of columns")
    names = list(dict.fromkeys(name for row in rows for name in row))
    for number, row in enumerate(rows):
        absent = [name for name in names if name not in row]
        if absent:
            names_absent = ", ".join(map(repr, absent))
            raise RequestError(f"row {number} has no {names_absent} (use '' / None for a missing value)")
    return {name: [_plain(row[name]) for row in rows] for name in names}


def _plain(value):
    """numpy values -> Python ones (arrays -> lists), so checks and JSON see plain types."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json_value(value):
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _tensor_values(values: list, dtype: str | None) -> np.ndarray:
    if dtype == "DT_STRING" or (dtype is None and _is_string(values)):
        return np.array(_encode_strings(values), dtype=object)
    return np.asarray(values, dtype=DTYPES.get(dtype, np.float32))


def _encode_strings(values):
    if isinstance(values, list):
        return [_encode_strings(v) for v in values]
    return values.encode("utf-8") if isinstance(values, str) else values


def _is_string(values) -> bool:
    while isinstance(values, list) and values:
        values = values[0]
    return isinstance(values, (str, bytes))


def _to_array(values, dtype: str | None) -> np.ndarray:
    if dtype == "DT_STRING":
        return np.array(values, dtype=object)
    return np.asarray(values, dtype=DTYPES.get(dtype) if dtype else None)


def _single_output(outputs: dict | None, answer: dict) -> str:
    if outputs is None or len(outputs) != 1:
        raise ServingError(
            "the server answered with one unnamed output; create the client with validate=True so the "
            f"signature's output name is known ({str(answer)[:100]})"
        )
    return next(iter(outputs))


def _signature_from_json(signature: dict) -> dict:
    """A SignatureDef as JSON (REST metadata, or MessageToDict) -> {"inputs", "outputs"} of {dtype, shape}."""

    def tensors(entries: dict) -> dict:
        result = {}
        for name, info in entries.items():
            shape = info.get("tensor_shape", {})
            dims = None if shape.get("unknown_rank") else [int(d.get("size", -1)) for d in shape.get("dim", [])]
            result[name] = {"dtype": info.get("dtype", "DT_INVALID"), "shape": dims}
        return result

    return {
        "inputs": tensors(signature.get("inputs", {})),
        "outputs": tensors(signature.get("outputs", {})),
        "method_name": signature.get("method_name", ""),
    }


def _server_message(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    try:
        return json.loads(text).get("error", text)
    except (ValueError, AttributeError):
        return text.strip()[:500]


def _grpc_code_name(code: int) -> str:
    import grpc

    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return str(code)
