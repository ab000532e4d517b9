"""TF Serving warmup: `assets.extra/tf_serving_warmup_requests`, real PredictRequests from validation rows.

TF Serving replays these records when it loads a version (at most 1000),
so tracing and memory allocation happen before the first live request. Each
record is a `PredictionLog` whose `predict_log.request` is a `PredictRequest`
with raw inputs, one per signature (`serving_default` and each `predict_<task>`)
and batch size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WARMUP_FILE = "tf_serving_warmup_requests"
SIGNATURE = "serving_default"


def warmup_requests(
    raw_inputs: dict[str, np.ndarray], dtypes: dict, model_name: str, batch_sizes=(1, 8), signatures=(SIGNATURE,)
):
    """PredictRequests of the first rows of `raw_inputs`, one per signature and batch size (capped at the rows)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    rows = len(next(iter(raw_inputs.values())))
    sizes = sorted({min(size, rows) for size in batch_sizes if size > 0})
    requests = []
    for signature in signatures:
        for size in sizes:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature
            for name, values in raw_inputs.items():
                batch = values[:size]
                if dtypes[name] == tf.string:
                    batch = np.vectorize(_as_bytes, otypes=[object])(batch)
                request.inputs[name].CopyFrom(tf.make_tensor_proto(batch, dtype=dtypes[name]))
            requests.append(request)
    return requests


def write_warmup(export_path: str | Path, requests) -> Path:
    """Write the requests as PredictionLog records into `<export>/assets.extra/tf_serving_warmup_requests`."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = Path(export_path) / "assets.extra" / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup(export_path: str | Path) -> list:
    """The PredictRequests of an export's warmup file."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = Path(export_path) / "assets.extra" / WARMUP_FILE
    requests = []
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        requests.append(log.predict_log.request)
    return requests


def _as_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def rest_body(request) -> dict:
    """A PredictRequest as the equivalent TF Serving REST body (row form; bytes as {"b64": ...})."""
    import base64

    import tensorflow as tf

    def plain(value):
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8") if value.decode("utf-8").isprintable() else _b64(value)
            except UnicodeDecodeError:
                return _b64(value)
        return value  # NaN stays NaN: TF Serving's JSON parser accepts the NaN literal json.dumps writes

    def _b64(value):
        return {"b64": base64.b64encode(value).decode("ascii")}

    columns = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
    rows = len(next(iter(columns.values())))
    instances = [
        {name: _nested(np.asarray(values[row]).tolist(), plain) for name, values in columns.items()}
        for row in range(rows)
    ]
    return {"signature_name": request.model_spec.signature_name, "instances": instances}


def _nested(value, convert):
    if isinstance(value, list):
        return [_nested(item, convert) for item in value]
    return convert(value)
