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

import http.client
import json
import time
import urllib.error
import urllib.request

import numpy as np

from keras_mtmm.serve.requests import (  # noqa: F401 (the errors and DTYPES: re-exported)
    DTYPES,
    RequestError,
    ServingError,
    ServingTimeout,
    ServingUnavailable,
    as_columns,
    check_inputs,
    grpc_code_name,
    json_value,
    read_paths,
    server_message,
    signature_from_json,
    single_output,
    tensor_values,
    to_array,
)

DEFAULT_SIGNATURE = "serving_default"
TRANSPORTS = ("rest", "grpc")
FORMS = ("row", "column")
_RETRY_GRPC_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")


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
        columns = as_columns(examples)
        spec = None
        if self.validate:
            spec = self.metadata().get(signature)
            if spec is None:
                raise RequestError(f"signature '{signature}' not found; the model has {', '.join(self.metadata())}")
            columns = check_inputs(columns, spec["inputs"])
        else:
            columns = {name: [read_paths(value) for value in values] for name, values in columns.items()}
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
                self._metadata = {name: signature_from_json(sig) for name, sig in signatures.items()}
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
                "instances": [{name: json_value(values[i]) for name, values in columns.items()} for i in range(rows)],
            }
        else:
            body = {
                "signature_name": signature,
                "inputs": {name: [json_value(v) for v in values] for name, values in columns.items()},
            }
        answer = self._rest("POST", self._rest_path() + ":predict", body)
        outputs = spec["outputs"] if spec else None
        if "predictions" in answer:
            predictions = answer["predictions"]
            if predictions and isinstance(predictions[0], dict):
                names = list(predictions[0])
                raw = {name: [row[name] for row in predictions] for name in names}
            else:
                raw = {single_output(outputs, answer): predictions}
        elif "outputs" in answer:
            raw = answer["outputs"] if isinstance(answer["outputs"], dict) else None
            if raw is None:
                raw = {single_output(outputs, answer): answer["outputs"]}
        else:
            raise ServingError(f"unexpected answer from the server: {str(answer)[:200]}")
        return {name: to_array(values, (outputs or {}).get(name, {}).get("dtype")) for name, values in raw.items()}

    def _rest(self, method: str, path: str, body: dict | None = None) -> dict:
        url = f"http://{self.host}:{self.rest_port}{path}"
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})

        def attempt():
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as error:
                message = server_message(error.read())
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
            request.inputs[name].CopyFrom(tf.make_tensor_proto(tensor_values(values, dtype)))
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
                "error_code": grpc_code_name(entry.status.error_code),
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
            name: signature_from_json(json_format.MessageToDict(sig, preserving_proto_field_name=True))
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
