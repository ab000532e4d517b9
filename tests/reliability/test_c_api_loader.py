"""The export through TF Serving's own loader: the TensorFlow C API's `TF_LoadSessionFromSavedModel`.

`tensorflow_model_server` loads a version with the C++ `LoadSavedModel`
(tags {serve}) and runs signatures by their tensor names in a session; the C
API in the `tensorflow` wheel wraps exactly that. `tests/c_api/saved_model_run.c`
is compiled here against the wheel's headers and `libtensorflow_cc.so.2`,
loads the tiny run's export in a process with no Python, and runs every
signature (`serving_default`, each `predict_<task>`) on raw inputs: real
rows, rows with one modality missing each, a row with every modality missing,
an empty batch, and the export's own warmup records. Every output must equal
what the in-process Keras model (probabilities) and the in-process SavedModel
signature (every output) give. Skipped where no C compiler is installed.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml
from tensorflow.core.protobuf import meta_graph_pb2

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.data.tables import load_splits
from keras_mtmm.export.warmup import read_warmup

SOURCE = Path(__file__).resolve().parent.parent / "c_api" / "saved_model_run.c"
TF_DIR = Path(tf.__file__).resolve().parent
STRING = tf.string.as_datatype_enum


@pytest.fixture(scope="module")
def loader(tmp_path_factory) -> Path:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler (gcc or cc) on PATH: the TF C API loader cannot be built")
    if not (TF_DIR / "include" / "tensorflow" / "c" / "c_api.h").exists():
        pytest.skip(f"the tensorflow wheel at {TF_DIR} ships no C API headers")
    binary = tmp_path_factory.mktemp("c_api") / "saved_model_run"
    command = [compiler, "-O1", "-Wall", "-Werror", "-o", str(binary), str(SOURCE), f"-I{TF_DIR / 'include'}"]
    command += [f"-L{TF_DIR}", "-l:libtensorflow_cc.so.2", "-l:libtensorflow_framework.so.2", f"-Wl,-rpath,{TF_DIR}"]
    built = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    return binary


def _write_request(path: Path, feeds: list[tuple[str, int, np.ndarray]], fetches: list[str]) -> None:
    """The request file of saved_model_run.c: feeds (tensor name, TF dtype enum, values), then fetch names."""
    parts = [struct.pack("=I", len(feeds))]
    for name, dtype, values in feeds:
        encoded = name.encode()
        parts.append(struct.pack("=I", len(encoded)) + encoded + struct.pack("=II", dtype, values.ndim))
        parts.append(struct.pack(f"={values.ndim}q", *values.shape))
        if dtype == STRING:
            for cell in values.reshape(-1):
                cell = cell if isinstance(cell, bytes) else str(cell).encode()
                parts.append(struct.pack("=Q", len(cell)) + cell)
        else:
            parts.append(np.ascontiguousarray(values, dtype=tf.dtypes.as_dtype(dtype).as_numpy_dtype).tobytes())
    parts.append(struct.pack("=I", len(fetches)))
    for name in fetches:
        parts.append(struct.pack("=I", len(name.encode())) + name.encode())
    path.write_bytes(b"".join(parts))


def _read_response(path: Path, count: int) -> list[np.ndarray]:
    data, offset, tensors = path.read_bytes(), 0, []

    def take(fmt):
        nonlocal offset
        values = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return values

    for _ in range(count):
        dtype, ndims = take("=II")
        shape = take(f"={ndims}q")
        if dtype == STRING:
            cells = []
            for _ in range(int(np.prod(shape))):
                (length,) = take("=Q")
                cells.append(data[offset : offset + length])
                offset += length
            tensors.append(np.array(cells, dtype=object).reshape(shape))
        else:
            (size,) = take("=Q")
            numpy_dtype = tf.dtypes.as_dtype(dtype).as_numpy_dtype
            tensors.append(np.frombuffer(data[offset : offset + size], dtype=numpy_dtype).reshape(shape))
            offset += size
    assert offset == len(data), "the response has trailing bytes"
    return tensors


def _signatures(loader: Path, export: Path, folder: Path) -> dict:
    """The signatures as the C loader saw them (the MetaGraphDef it returns)."""
    meta_path = folder / "meta_graph.pb"
    ran = subprocess.run([str(loader), str(export), str(meta_path)], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    meta_graph = meta_graph_pb2.MetaGraphDef()
    meta_graph.ParseFromString(meta_path.read_bytes())
    assert "serve" in meta_graph.meta_info_def.tags
    return dict(meta_graph.signature_def)


def _input_sets(run) -> dict[str, dict[str, np.ndarray]]:
    """Named batches of raw inputs: real rows, each modality missing in one row, all missing, empty, warmup."""
    config = config_from_dict(yaml.safe_load((run.run_dir / "config.yaml").read_text()))
    raw = run.preprocessor.raw_inputs(load_splits(config)["test"])
    raw = {name: values[:6].copy() for name, values in raw.items()}
    raw["image"][0] = b""
    raw["text"][1] = ""
    raw["numeric"][2, 0] = np.nan
    raw["categorical"][3, 0] = "unobtainium"
    for name, values in raw.items():  # row 4: every modality missing
        values[4] = np.nan if values.dtype.kind == "f" else b"" if name == "image" else ""
    sets = {"rows": raw, "empty": {name: values[:0] for name, values in raw.items()}}
    for index, request in enumerate(read_warmup(run.export_path)):
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        sets[f"warmup_{index}_{request.model_spec.signature_name or 'serving_default'}"] = inputs
    return sets


def test_tf_c_api_loader_serves_every_signature_like_the_in_process_model(loader, tiny_run, tmp_path):
    export = tiny_run.export_path
    signatures = _signatures(loader, export, tmp_path)
    tasks = list(tiny_run.preprocessor.tasks)
    assert set(signatures) >= {"serving_default", *(f"predict_{task}" for task in tasks)}

    in_process = tf.saved_model.load(str(export)).signatures
    arguments, expected, fetched = [], {}, {}
    input_sets = _input_sets(tiny_run)
    assert any(name.startswith("warmup_") for name in input_sets), "the export has warmup records"
    for set_name, raw in input_sets.items():
        names = [s for s in signatures if s.startswith(("serving_default", "predict_"))]
        if set_name.startswith("warmup_"):
            names = [set_name.split("_", 2)[2]]
        for signature_name in names:
            signature = signatures[signature_name]
            assert set(signature.inputs) == set(raw), (signature_name, set_name)
            feeds = [(info.name, info.dtype, np.asarray(raw[key])) for key, info in sorted(signature.inputs.items())]
            outputs = sorted(signature.outputs)
            stem = f"{set_name}.{signature_name}"
            request, response = tmp_path / f"{stem}.request", tmp_path / f"{stem}.response"
            _write_request(request, feeds, [signature.outputs[key].name for key in outputs])
            arguments += [str(request), str(response)]
            fetched[(set_name, signature_name)] = (response, outputs)
            dtypes = {key: tf.as_dtype(info.dtype) for key, info in signature.inputs.items()}
            typed = {key: tf.constant(value, dtype=dtypes[key]) for key, value in raw.items()}
            results = in_process[signature_name](**typed)
            expected[(set_name, signature_name)] = {key: value.numpy() for key, value in results.items()}

    ran = subprocess.run(
        [str(loader), str(export), str(tmp_path / "meta_graph.pb"), *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"},  # the loader's own log line shows which loader ran
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "SavedModel load for tags { serve }" in ran.stderr, "the C++ LoadSavedModel logs its load"

    for (set_name, signature_name), (response, outputs) in fetched.items():
        where = f"{signature_name} on {set_name}"
        got = dict(zip(outputs, _read_response(response, len(outputs))))
        assert set(got) == set(expected[(set_name, signature_name)]), where
        rows = len(next(iter(input_sets[set_name].values())))
        for key, value in got.items():
            want = expected[(set_name, signature_name)][key]
            assert value.shape == want.shape and value.shape[:1] == (rows,), (where, key, value.shape)
            if value.dtype == object:
                assert value.tolist() == want.tolist(), (where, key)
            else:
                assert np.all(np.isfinite(value)), (where, key)
                np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-6, err_msg=f"{where}: {key}")

    # The probabilities equal the in-memory Keras model's on the same raw rows.
    raw = input_sets["rows"]
    keras_outputs = tiny_run.model(tiny_run.preprocessor.transform(raw), training=False)
    response, outputs = fetched[("rows", "serving_default")]
    served = dict(zip(outputs, _read_response(response, len(outputs))))
    for task in tasks:
        np.testing.assert_allclose(served[task], np.asarray(keras_outputs[task]), rtol=1e-5, atol=1e-5, err_msg=task)
