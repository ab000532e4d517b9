"""The request side of the TF Serving client: its errors, the checks of raw values against a
signature, and the conversions between Python values, JSON and tensors (`keras_mtmm.serve.client`).
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np

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


def read_paths(value):
    if isinstance(value, Path):
        return value.read_bytes()
    if isinstance(value, (list, tuple)):
        return [read_paths(item) for item in value]
    return value


def as_columns(examples) -> dict[str, list]:
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


def json_value(value):
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list):
        return [json_value(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def tensor_values(values: list, dtype: str | None) -> np.ndarray:
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


def to_array(values, dtype: str | None) -> np.ndarray:
    if dtype == "DT_STRING":
        return np.array(values, dtype=object)
    return np.asarray(values, dtype=DTYPES.get(dtype) if dtype else None)


def single_output(outputs: dict | None, answer: dict) -> str:
    if outputs is None or len(outputs) != 1:
        raise ServingError(
            "the server answered with one unnamed output; create the client with validate=True so the "
            f"signature's output name is known ({str(answer)[:100]})"
        )
    return next(iter(outputs))


def signature_from_json(signature: dict) -> dict:
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


def server_message(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    try:
        return json.loads(text).get("error", text)
    except (ValueError, AttributeError):
        return text.strip()[:500]


def grpc_code_name(code: int) -> str:
    import grpc

    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return str(code)
