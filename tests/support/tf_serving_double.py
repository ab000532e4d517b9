"""A test double for TensorFlow Serving: its REST and gRPC predict/status/metadata subset, in Python.

`tensorflow_model_server` is a C++ binary that cannot be installed here, so
the client tests and `benchmarks/serving.py` run against `TFServingDouble`.
It loads every version the `models.config` policy selects the way the server
does (`tf.compat.v1.saved_model.loader.load(session, ["serve"], path)`, one
tf.Graph + Session per version, then `Session.run` on the signature's tensor
names) and answers on 127.0.0.1 with the server's request and answer formats
and error messages (taken from tensorflow/serving: http_rest_api_handler.cc,
json_tensor.cc, predict_util.cc, server_core.cc, get_model_status_impl.cc).

    with TFServingDouble("saved_models/models.config") as server:
        urlopen(f"http://127.0.0.1:{server.rest_port}/v1/models/demo")
        grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        server.reload_config()  # after a label or version change, as --model_config_file_poll_wait_seconds

Implemented:
- models.config: `model_config_list` entries (name, absolute base_path, model_platform "tensorflow",
  version policy latest{num_versions} | all{} | specific{versions}, version_labels). Integer folders
  only; a label must point at a loaded version (the server refuses the config otherwise). Warmup
  records (`assets.extra/tf_serving_warmup_requests`, at most 1000 PredictLogs) are replayed at load
  and a failing one fails the load, as in the server.
- REST: GET /v1/models/{name}[/versions/{v}|/labels/{l}] (status), .../metadata, and
  POST ...:predict in row ("instances") and column ("inputs") form, with {"b64": ...} strings,
  NaN/Infinity literals, the one-input and one-output shortcuts, `*_bytes` outputs as {"b64": ...},
  float32 written in shortest round-trip form. Errors are {"error": message} with the server's
  status code mapping (INVALID_ARGUMENT/FAILED_PRECONDITION 400, NOT_FOUND 404, UNIMPLEMENTED 501).
- gRPC: PredictionService.Predict (version, version_label, signature_name, output_filter) and
  GetModelMetadata (signature_def), ModelService.GetModelStatus; errors by context.abort with the
  server's status code. Message size limits are lifted as in the server (2**31 - 1).
- `reload_config()` re-reads models.config; versions that stay are kept loaded, the switch to the
  new set is one atomic assignment, so requests in flight finish on the versions they started with.

Deliberate differences from the real server:
- Nothing polls: call `reload_config()`. Retired versions' sessions are closed at `stop()`.
- A version the policy asks for that is missing or fails to load raises at start/reload (the server
  would log, retry and keep waiting); a model with no version folder raises too.
- Inputs are checked against the signature's rank and known dims before Session.run ("Cannot feed
  value of shape ..."), where the server would pass them on and fail inside the graph, if at all.
- Paths outside /v1/ answer 404 with a JSON error (the server answers a bare 404).

Like the real server (which may surprise): a status request by label ignores the label and lists
every version; an unknown label is INVALID_ARGUMENT (400), not NOT_FOUND; a wrong HTTP method is
"Malformed request: GET /v1/models/demo:predict" (400, not 405); an unknown signature is 400 over
REST but FAILED_PRECONDITION ('Serving signature key "x" not found.') over gRPC.

Not implemented: :classify / :regress (501), Classify/Regress/MultiInference/ReloadConfig RPCs
(UNIMPLEMENTED), batching, monitoring/Prometheus, SSL, signature `defaults`, TFLite and other
platforms, session-bundle exports, file-system polling and the LOADING/UNLOADING/END states.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format, text_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000
MAX_MESSAGE_BYTES = 2**31 - 1
PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.IGNORECASE
)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.IGNORECASE
)
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
GRPC_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}
# DataTypeString() names where they differ from tf.dtypes names.
DTYPE_NAMES = {types_pb2.DT_FLOAT: "float", types_pb2.DT_DOUBLE: "double", types_pb2.DT_HALF: "half"}
INT_RANGES = {
    types_pb2.DT_INT8: (-(2**31), 2**31 - 1),  # the server stores these in int_val: any int32 passes
    types_pb2.DT_INT16: (-(2**31), 2**31 - 1),
    types_pb2.DT_INT32: (-(2**31), 2**31 - 1),
    types_pb2.DT_UINT8: (-(2**31), 2**31 - 1),
    types_pb2.DT_INT64: (-(2**63), 2**63 - 1),
    types_pb2.DT_UINT32: (0, 2**32 - 1),
    types_pb2.DT_UINT64: (0, 2**64 - 1),
}


class ServingError(Exception):
    """A request error: a gRPC status code and the server's message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def status_string(self) -> str:
        return f"{self.code.name}: {self.message}"


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


@dataclass(frozen=True, eq=False)
class LoadedVersion:
    """One loaded version: its graph, session and signatures."""

    name: str
    version: int
    path: Path
    session: tf.compat.v1.Session
    signatures: dict  # signature name -> SignatureDef


@dataclass(frozen=True)
class ServingState:
    """What is being served; replaced as a whole on reload."""

    models: dict  # name -> {version: LoadedVersion}
    labels: dict  # name -> {label: version}


class TFServingDouble:
    """A stand-in for `tensorflow_model_server --model_config_file=...` on free 127.0.0.1 ports.

    Args:
        model_config_file: a text-format ModelServerConfig (e.g. `saved_models/models.config`).
        rest: serve the REST API (`rest_port`).
        grpc: serve the gRPC API (`grpc_port`).
        max_workers: threads of the gRPC server.
        warmup: replay each version's warmup records when it loads.
        rest_port, grpc_port: ports to bind (0 = a free one).

    Example:
        with TFServingDouble(export_dir / "models.config") as server:
            print(server.rest_port, server.grpc_port)
    """

    def __init__(
        self,
        model_config_file,
        rest: bool = True,
        grpc: bool = True,
        max_workers: int = 8,
        warmup: bool = True,
        rest_port: int = 0,
        grpc_port: int = 0,
    ):
        self.model_config_file = Path(model_config_file)
        self.rest = rest
        self.grpc = grpc
        self.max_workers = max_workers
        self.warmup = warmup
        self._ports = (rest_port, grpc_port)
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self._state = ServingState({}, {})
        self._retired: list[LoadedVersion] = []
        self._reload_lock = threading.Lock()
        self._http_server = None
        self._http_thread = None
        self._grpc_server = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> TFServingDouble:
        if self._http_server is not None or self._grpc_server is not None:
            raise RuntimeError("TFServingDouble is already started")
        self.reload_config()
        try:
            if self.rest:
                self._http_server = _HttpServer(("127.0.0.1", self._ports[0]), _RestHandler)
                self._http_server.double = self
                self.rest_port = self._http_server.server_address[1]
                self._http_thread = threading.Thread(
                    target=self._http_server.serve_forever, name="tf-serving-double-rest", daemon=True
                )
                self._http_thread.start()
            if self.grpc:
                options = [
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ]
                self._grpc_server = grpc.server(futures.ThreadPoolExecutor(self.max_workers), options=options)
                prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
                    _PredictionServicer(self), self._grpc_server
                )
                model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelServicer(self), self._grpc_server)
                self.grpc_port = self._grpc_server.add_insecure_port(f"127.0.0.1:{self._ports[1]}")
                self._grpc_server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_thread.join()
            self._http_server = self._http_thread = None
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None).wait()
            self._grpc_server = None
        with self._reload_lock:
            state, self._state = self._state, ServingState({}, {})
            for loaded in [*self._retired, *(v for versions in state.models.values() for v in versions.values())]:
                loaded.session.close()
            self._retired = []

    def __enter__(self) -> TFServingDouble:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- configuration -------------------------------------------------------------------------------------------

    def reload_config(self) -> None:
        """Re-read models.config: load new versions, drop unselected ones, re-point labels (atomically).

        Raises ValueError (and keeps serving the previous state) when the config is invalid, a selected
        version is missing or fails to load, or a label points at a version that is not loaded.
        """
        with self._reload_lock:
            config = _read_config(self.model_config_file)
            current = self._state
            models, labels, fresh = {}, {}, []
            try:
                for entry in config.model_config_list.config:
                    if entry.name in models:
                        raise ValueError(f"{self.model_config_file}: model '{entry.name}' is configured twice")
                    base_path = Path(entry.base_path)
                    versions = {}
                    for version in _selected_versions(entry, base_path):
                        loaded = current.models.get(entry.name, {}).get(version)
                        if loaded is None or loaded.path != base_path / str(version):
                            loaded = self._load(entry.name, version, base_path / str(version))
                            fresh.append(loaded)
                        versions[version] = loaded
                    for label, version in entry.version_labels.items():
                        if version not in versions:
                            raise ValueError(
                                f"{self.model_config_file}: request to assign label '{label}' to version {version} "
                                f"of model '{entry.name}', which is not loaded (loaded: {sorted(versions)}); "
                                "TF Serving refuses such a config"
                            )
                    models[entry.name] = versions
                    labels[entry.name] = dict(entry.version_labels)
            except BaseException:
                for loaded in fresh:
                    loaded.session.close()
                raise
            kept = {id(v) for versions in models.values() for v in versions.values()}
            self._state = ServingState(models, labels)
            self._retired.extend(v for vs in current.models.values() for v in vs.values() if id(v) not in kept)

    def _load(self, name: str, version: int, path: Path) -> LoadedVersion:
        graph = tf.Graph()
        session = tf.compat.v1.Session(graph=graph)
        try:
            with graph.as_default():
                meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(path))
            loaded = LoadedVersion(name, version, path, session, dict(meta_graph.signature_def))
            if self.warmup and (path / WARMUP_FILE).is_file():
                for request in _warmup_requests(path / WARMUP_FILE):
                    _predict(loaded, request.model_spec.signature_name, _request_arrays(request), ())
        except (ServingError, tf.errors.OpError, OSError, RuntimeError, ValueError) as error:
            session.close()
            message = error.message if isinstance(error, ServingError | tf.errors.OpError) else str(error)
            raise ValueError(f"loading version {version} of model '{name}' from {path} failed: {message}") from None
        return loaded

    # -- the server core (shared by REST and gRPC) ---------------------------------------------------------------

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> LoadedVersion:
        """The version a model spec names: ServerCore::GetServableHandle."""
        state = self._state
        if label:
            version = state.labels.get(name, {}).get(label)
            if version is None:
                raise _invalid(f"Unrecognized servable version label: {label}")
        versions = state.models.get(name, {})
        if version is None:
            if not versions:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({name})")
            return versions[max(versions)]
        if version not in versions:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Specific({name}, {version})"
            )
        return versions[version]

    def model_status(self, name: str, version: int | None = None):
        """GetModelStatusResponse (a label is ignored, as by the server)."""
        versions = self._state.models.get(name, {})
        if version is not None and version not in versions:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find version {version} of model {name}")
        if not versions:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for number in [version] if version is not None else sorted(versions):
            entry = response.model_version_status.add(
                version=number, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE
            )
            entry.status.SetInParent()  # error_code OK, error_message ""
        return response

    def model_metadata(self, name: str, version: int | None = None, label: str | None = None):
        """GetModelMetadataResponse with the SignatureDefMap packed under "signature_def"."""
        loaded = self.servable(name, version, label)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = loaded.name
        response.model_spec.version.value = loaded.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in loaded.signatures.items():
            signature_map.signature_def[key].CopyFrom(signature)
        response.metadata["signature_def"].Pack(signature_map)
        return response

    # -- REST ---------------------------------------------------------------------------------------------------

    def handle_rest(self, method: str, path: str, body: bytes) -> tuple[int, dict | list]:
        """(HTTP status, JSON answer) for one REST request, as HttpRestApiHandler::ProcessRequest."""
        try:
            return 200, self._rest(method, path, body)
        except ServingError as error:
            return error.http_status, {"error": error.message}
        except Exception as error:  # a bug in the double: answer like the server's INTERNAL, keep serving
            return 500, {"error": f"TFServingDouble internal error: {error!r}"}

    def _rest(self, method: str, path: str, body: bytes):
        predict = PREDICT_PATH.fullmatch(path) if method == "POST" else None
        status = STATUS_PATH.fullmatch(path) if method == "GET" else None
        match = predict or status
        if match is None:
            raise _invalid(f"Malformed request: {method} {path}")
        name = unquote(match.group(1) or "")
        version = _parse_version(match.group(2))
        label = unquote(match.group(3)) if match.group(3) else None
        if predict:
            if match.group(4).lower() != "predict":
                raise ServingError(
                    grpc.StatusCode.UNIMPLEMENTED, f"{match.group(4)} is not implemented by TFServingDouble"
                )
            return self._rest_predict(name, version, label, body)
        if not name:
            raise _invalid("Missing model name in request.")
        if match.group(4):
            response = self.model_metadata(name, version, label)
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(signature_map)
            return {
                "model_spec": _to_dict(response.model_spec),
                "metadata": {"signature_def": _to_dict(signature_map)},
            }
        return json_format.MessageToDict(self.model_status(name, version), always_print_fields_with_no_presence=True)

    def _rest_predict(self, name, version, label, body: bytes):
        document = _parse_json(body)
        signature_name = document.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise _invalid(
                f"JSON Value: {_json(document)} not formatted correctly. 'signature_name' key must be a string value."
            )
        loaded = self.servable(name, version, label)
        signature = _signature(loaded, signature_name, rest=True)
        input_infos = dict(signature.inputs)
        if not input_infos:
            raise _invalid(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
        if "instances" in document:
            if "inputs" in document:
                raise _invalid(
                    f"JSON Value: {_json(document)} Not formatted correctly expecting only one of 'inputs' or "
                    "'instances' keys to exist "
                )
            instances = document["instances"]
            if not isinstance(instances, list):
                raise _invalid(f"JSON Value: {_json(document)} Excepting 'instances' to be an list/array")
            if not instances:
                raise _invalid(f"JSON Value: {_json(document)} No values in 'instances' array")
            arrays, row_form = _instances_to_arrays(instances, input_infos), True
        elif "inputs" in document:
            arrays, row_form = _inputs_to_arrays(document["inputs"], input_infos), False
        else:
            raise _invalid("Missing 'inputs' or 'instances' key")
        _, outputs = _predict(loaded, signature_name, arrays, ())
        return _outputs_to_json(outputs, row_form)


# -- prediction -------------------------------------------------------------------------------------------------


def _signature(loaded: LoadedVersion, signature_name: str, rest: bool):
    key = signature_name or DEFAULT_SIGNATURE
    if key not in loaded.signatures:
        if rest:
            raise _invalid(f'Serving signature name: "{key}" not found in signature def')
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.')
    return loaded.signatures[key]


def _predict(loaded: LoadedVersion, signature_name: str, inputs: dict, output_filter) -> tuple[str, dict]:
    """Run a signature on named arrays (internal::RunPredict + PreProcessPrediction); return (key, outputs)."""
    key = signature_name or DEFAULT_SIGNATURE
    signature = _signature(loaded, signature_name, rest=False)
    wanted, given = sorted(signature.inputs), sorted(inputs)
    if len(given) != len(wanted):
        raise _invalid(
            f"input size does not match signature: {len(given)}!={len(wanted)} len({{{','.join(given)}}}) != "
            f"len({{{','.join(wanted)}}}). Sent extra: {{{','.join(sorted(set(given) - set(wanted)))}}}. "
            f"Missing but required: {{{','.join(sorted(set(wanted) - set(given)))}}}."
        )
    feed = {}
    for index, alias in enumerate(wanted):
        info = signature.inputs[alias]
        if alias not in inputs:
            raise _invalid(
                f"Signature input alias: {alias}(feed name: {info.name}) not found in request and no default "
                f"value provided. Inputs expected to be in the request {{{','.join(given)}}}, or default input "
                "alias set: {}"
            )
        value = inputs[alias]
        received = (
            types_pb2.DT_STRING if value.dtype.kind in "OSU" else tf.dtypes.as_dtype(value.dtype).as_datatype_enum
        )
        if received != info.dtype:
            raise _invalid(
                f"Expects arg[{index}] to be {_dtype_name(info.dtype)} but {_dtype_name(received)} is provided"
            )
        _check_shape(alias, info, value.shape)
        feed[info.name] = value
    aliases = list(output_filter) or sorted(signature.outputs)
    for alias in output_filter:
        if alias not in signature.outputs:
            raise _invalid(
                f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                f"{{{','.join(sorted(signature.outputs))}}}."
            )
    if len(set(aliases)) != len(aliases):
        duplicate = next(a for a in aliases if aliases.count(a) > 1)
        raise _invalid(f"duplicate output tensor alias: {duplicate}")
    try:
        values = loaded.session.run([signature.outputs[a].name for a in aliases], feed_dict=feed)
    except tf.errors.OpError as error:
        # Python's Session prefixes "Graph execution error:"; the C++ session the server runs does not.
        message = error.message.removeprefix("Graph execution error:").lstrip("\n")
        raise ServingError(GRPC_CODE_BY_NUMBER.get(error.error_code, grpc.StatusCode.UNKNOWN), message) from None
    return key, dict(zip(aliases, values))


def _check_shape(alias: str, info, shape: tuple) -> None:
    if info.tensor_shape.unknown_rank:
        return
    dims = [d.size for d in info.tensor_shape.dim]
    if len(dims) != len(shape) or any(d >= 0 and d != s for d, s in zip(dims, shape)):
        expected = tuple(None if d < 0 else d for d in dims)
        raise _invalid(
            f"Cannot feed value of shape {tuple(shape)} for Tensor {info.name} (input '{alias}'), "
            f"which has shape {expected}"
        )


def _request_arrays(request) -> dict:
    arrays = {}
    for alias, proto in request.inputs.items():
        try:
            arrays[alias] = tf.make_ndarray(proto)
        except (TypeError, ValueError):
            raise _invalid(f"tensor parsing error: {alias}") from None
    return arrays


def _warmup_requests(path: Path):
    for index, record in enumerate(tf.data.TFRecordDataset(str(path))):
        if index >= MAX_WARMUP_RECORDS:
            return
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        if log.WhichOneof("log_type") == "predict_log":
            yield log.predict_log.request


# -- JSON <-> arrays (json_tensor.cc) ---------------------------------------------------------------------------


def _parse_json(body: bytes) -> dict:
    if not body:
        raise _invalid("JSON Parse error: The document is empty")
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        reason, offset = (
            (error.msg, error.pos) if isinstance(error, json.JSONDecodeError) else (error.reason, error.start)
        )
        raise _invalid(f"JSON Parse error: {reason} at offset: {offset}") from None
    if not isinstance(document, dict):
        raise _invalid(f"JSON Value: {_json(document)} Is not object")
    return document


def _instances_to_arrays(instances: list, input_infos: dict) -> dict:
    """Row form: one JSON value (or object of named values) per row, batched along a new first dim."""
    names = sorted(input_infos)
    first = instances[0]
    if not isinstance(first, dict) and len(names) > 1:
        raise _invalid(
            "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
            "tensorinfo_map"
        )
    elements_are_objects = _is_object(first)
    rows: dict[str, list] = {}
    shapes: dict[str, list] = {}
    for index, element in enumerate(instances):
        if elements_are_objects:
            if not _is_object(element):
                raise _invalid(f"Expecting object but got list at item {index} of input list")
            for key, value in element.items():
                try:
                    _add_instance_item(value, key, input_infos, rows, shapes)
                except ServingError as error:
                    raise _invalid(
                        f"Failed to process element: {index} key: {key} of 'instances' list. "
                        f"Error: {error.status_string()}"
                    ) from None
            if set(element) != set(names):
                raise _invalid(
                    f"Failed to process element: {index} of 'instances' list. JSON object: {_json(element)} "
                    f"keys must be equal to: {','.join(names)}"
                )
        else:
            if _is_object(element):
                raise _invalid(f"Expecting value/list but got object at item {index} of input list")
            try:
                _add_instance_item(element, names[0], input_infos, rows, shapes)
            except ServingError as error:
                raise _invalid(
                    f"Failed to process element: {index} of 'instances' list. Error: {error.status_string()}"
                ) from None
    return {
        name: _as_array(
            [v for row in rows[name] for v in row], [len(instances), *shapes[name]], input_infos[name].dtype
        )
        for name in rows
    }


def _add_instance_item(value, name: str, input_infos: dict, rows: dict, shapes: dict) -> None:
    if name not in input_infos:
        raise _invalid(f"JSON object: does not have named input: {name}")
    shape, flat = _flatten(value, input_infos[name].dtype)
    if name not in rows:
        rows[name], shapes[name] = [], shape
    elif int(np.prod(shapes[name])) != len(flat):
        raise _invalid(f"Expecting tensor size: {int(np.prod(shapes[name]))} but got: {len(flat)}")
    elif shapes[name] != shape:
        raise _invalid(f"Expecting shape {_shape_string(shapes[name])} but got: {_shape_string(shape)}")
    rows[name].append(flat)


def _inputs_to_arrays(value, input_infos: dict) -> dict:
    """Column form: one JSON value per input (a bare value when the signature has a single input)."""
    if not isinstance(value, dict) or _is_b64(value):
        if len(input_infos) > 1:
            raise _invalid(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
                "tensorinfo_map"
            )
        [(name, info)] = input_infos.items()
        return {name: _as_array(*reversed(_flatten(value, info.dtype)), info.dtype)}
    arrays = {}
    for name in sorted(input_infos):
        if name not in value:
            raise _invalid(f"Missing named input: {name} in 'inputs' object.")
        shape, flat = _flatten(value[name], input_infos[name].dtype)
        arrays[name] = _as_array(flat, shape, input_infos[name].dtype)
    return arrays


def _flatten(value, dtype: int) -> tuple[list, list]:
    """(shape, flat values) of a nested JSON list, the shape read along the first elements (FillTensorProto)."""
    shape, probe = [], value
    while isinstance(probe, list):
        shape.append(len(probe))
        if not probe:
            break
        probe = probe[0]
    flat: list = []
    _fill(value, 0, shape, dtype, flat)
    return shape, flat


def _fill(value, level: int, shape: list, dtype: int, flat: list) -> None:
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise _invalid(
                f"JSON Value: {_json(value)} found at incorrect level: {level + 1} in the JSON DOM. "
                f"Expected at level: {rank}"
            )
        if isinstance(value, dict):
            if dtype != types_pb2.DT_STRING:
                raise _type_error(value, dtype)
            flat.append(_decode_b64(value))
        else:
            flat.append(_scalar(value, dtype))
        return
    if level >= rank:
        raise _invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise _invalid(
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected size: {shape[level]}"
        )
    for item in value:
        _fill(item, level + 1, shape, dtype, flat)


def _scalar(value, dtype: int):
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
        if not is_number:
            raise _type_error(value, dtype)
        digits, largest = (24, 3.4028234663852886e38) if dtype == types_pb2.DT_FLOAT else (53, 1.7976931348623157e308)
        lossy = abs(value) > 2**digits - 1 if isinstance(value, int) else np.isfinite(value) and abs(value) > largest
        if lossy:
            target = "float" if dtype == types_pb2.DT_FLOAT else "double"
            raise _invalid(f"Cannot convert JSON value: {_json(value)} to {target} without loss of precision.")
        return value
    if dtype in INT_RANGES:
        low, high = INT_RANGES[dtype]
        if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
            raise _type_error(value, dtype)
        return value
    if dtype == types_pb2.DT_BOOL:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    if dtype == types_pb2.DT_STRING:
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8")
    raise ServingError(
        grpc.StatusCode.UNIMPLEMENTED, f"Conversion of JSON Value: {_json(value)} to type: {_dtype_name(dtype)}"
    )


def _as_array(flat: list, shape: list, dtype: int) -> np.ndarray:
    if dtype == types_pb2.DT_STRING:
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    numpy_dtype = tf.dtypes.as_dtype(dtype).as_numpy_dtype
    if dtype in INT_RANGES and dtype not in (types_pb2.DT_INT64, types_pb2.DT_UINT32, types_pb2.DT_UINT64):
        return np.array(flat, dtype=np.int64).astype(numpy_dtype).reshape(shape)  # wraps like int_val -> Tensor
    return np.array(flat, dtype=numpy_dtype).reshape(shape)


def _outputs_to_json(outputs: dict, row_form: bool):
    """{"predictions": rows} or {"outputs": columns}; a single output drops its name (MakeJsonFromTensors)."""
    names = sorted(outputs)
    values = {name: _to_json_values(name, np.asarray(outputs[name])) for name in names}
    if not row_form:
        return {"outputs": values if len(names) > 1 else values[names[0]]}
    batch_size = None
    for name in names:
        if np.ndim(outputs[name]) == 0:
            raise _invalid(f"Tensor name: {name} has no shape information ")
        size = np.shape(outputs[name])[0]
        if batch_size is not None and size != batch_size:
            raise _invalid(f"Tensor name: {name} has inconsistent batch size: {size} expecting: {batch_size}")
        batch_size = size
    if len(names) == 1:
        return {"predictions": values[names[0]]}
    return {"predictions": [{name: values[name][row] for name in names} for row in range(batch_size)]}


def _to_json_values(name: str, array: np.ndarray):
    if array.dtype == object or array.dtype.kind in "SU":
        as_b64 = name.endswith("_bytes")
        convert = np.frompyfunc(lambda v: _string_value(v, as_b64), 1, 1)
        return convert(array).tolist() if array.ndim else convert(array.item())
    if array.dtype in (np.float32, np.float16):
        # The shortest decimal that reads back as the same float32, as the server writes it.
        shortest = np.array([float(s) for s in array.astype(np.float32).ravel().astype(str)], dtype=np.float64)
        return shortest.reshape(array.shape).tolist()
    return array.tolist()


def _string_value(value, as_b64: bool):
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
    if as_b64:
        return {"b64": base64.b64encode(raw).decode("ascii")}
    return raw.decode("utf-8", errors="replace")


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_object(value) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _decode_b64(value) -> bytes:
    if not _is_b64(value):
        raise _invalid(f"JSON Value: {_json(value)} not formatted correctly for base64 data")
    text = value["b64"]
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("Unable to base64 decode") from None


def _type_error(value, dtype: int) -> ServingError:
    return _invalid(
        f"JSON Value: {_json(value)} Type: {_json_type(value)} is not of expected type: {_dtype_name(dtype)}"
    )


def _json(value) -> str:
    return json.dumps(value, indent=4)


def _json_type(value) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    return {dict: "Object", list: "Array", str: "String"}.get(type(value), "Number")


def _dtype_name(dtype: int) -> str:
    return DTYPE_NAMES.get(dtype) or tf.dtypes.as_dtype(dtype).name


def _shape_string(shape: list) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _parse_version(text: str | None) -> int | None:
    if not text:
        return None
    version = int(text)
    if version > 2**63 - 1:
        raise _invalid(f"Failed to convert version: {text} to numeric.")
    return version


def _to_dict(message) -> dict:
    return json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
    )


# -- models.config --------------------------------------------------------------------------------------------


def _read_config(path: Path):
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(path.read_text(encoding="utf-8"), config)
    except (OSError, text_format.ParseError) as error:
        raise ValueError(f"{path}: not a readable text-format ModelServerConfig ({error})") from None
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError(f"{path}: expected a model_config_list (custom_model_config is not supported)")
    for entry in config.model_config_list.config:
        if entry.model_platform not in ("", "tensorflow"):
            raise ValueError(
                f"{path}: model '{entry.name}' has model_platform '{entry.model_platform}'; "
                "TFServingDouble serves 'tensorflow' only"
            )
        if not Path(entry.base_path).is_absolute():
            raise ValueError(f"{path}: model '{entry.name}' base_path '{entry.base_path}' is not absolute")
    return config


def _selected_versions(entry, base_path: Path) -> list[int]:
    """The versions a model_version_policy selects among the integer folders under base_path."""
    folders = base_path.iterdir() if base_path.is_dir() else []
    on_disk = sorted(int(p.name) for p in folders if p.is_dir() and p.name.isdigit())
    if not on_disk:
        raise ValueError(f"model '{entry.name}': no version folders under base_path {base_path}")
    policy = entry.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return on_disk
    if choice == "specific":
        wanted = sorted(set(policy.specific.versions))
        missing = [v for v in wanted if v not in on_disk]
        if missing:
            raise ValueError(
                f"model '{entry.name}': the specific version policy asks for {missing}, not under {base_path} "
                f"(found: {on_disk})"
            )
        return wanted
    return on_disk[-max(1, policy.latest.num_versions if choice == "latest" else 1) :]


# -- frontends ----------------------------------------------------------------------------------------------------


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    double: TFServingDouble


class _RestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TFServingDouble"

    def do_GET(self):  # noqa: N802
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def do_PUT(self):  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self):  # noqa: N802
        self._handle("DELETE")

    def do_PATCH(self):  # noqa: N802
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        if re.fullmatch(r"/v1/.*", path, re.IGNORECASE):
            status, answer = self.server.double.handle_rest(method, path, body)
        else:
            status, answer = 404, {"error": f"Not Found: {path}"}
        payload = json.dumps(answer, indent=1).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):  # noqa: A002
        pass


def _model_spec_parts(model_spec) -> tuple[str, int | None, str | None]:
    choice = model_spec.WhichOneof("version_choice")
    version = model_spec.version.value if choice == "version" else None
    label = model_spec.version_label if choice == "version_label" else None
    return model_spec.name, version, label


class _PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, double: TFServingDouble):
        self.double = double

    def Predict(self, request, context):  # noqa: N802
        try:
            if not request.HasField("model_spec"):
                raise _invalid("Missing ModelSpec")
            loaded = self.double.servable(*_model_spec_parts(request.model_spec))
            key, outputs = _predict(
                loaded, request.model_spec.signature_name, _request_arrays(request), request.output_filter
            )
        except ServingError as error:
            context.abort(error.code, error.message)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = loaded.name
        response.model_spec.version.value = loaded.version
        response.model_spec.signature_name = key
        for alias, value in outputs.items():
            response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
        return response

    def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            if not request.HasField("model_spec"):
                raise _invalid("Missing ModelSpec")
            if not request.metadata_field:
                raise _invalid("GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != "signature_def":
                    raise _invalid(f"Metadata field {field} is not supported")
            return self.double.model_metadata(*_model_spec_parts(request.model_spec))
        except ServingError as error:
            context.abort(error.code, error.message)


class _ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, double: TFServingDouble):
        self.double = double

    def GetModelStatus(self, request, context):  # noqa: N802
        try:
            if not request.HasField("model_spec"):
                raise _invalid("Missing ModelSpec")
            name, version, _ = _model_spec_parts(request.model_spec)
            return self.double.model_status(name, version)
        except ServingError as error:
            context.abort(error.code, error.message)
