"""Run an export with plain TensorFlow only, as tensorflow_model_server does (used by test_export.py).

    python plain_tf_predict.py EXPORT_DIR INPUTS.pkl OUTPUTS.npz BATCH_SIZE [BATCH_SIZE ...]

Loads the SavedModel twice, (1) with the TF2 loader and the `serving_default`
signature, (2) with the TF1 bundle loader + `Session.run` on the signature's
tensor names (the server's path), runs the raw inputs in batches of each
size, and saves the outputs. Importing keras_mtmm here is an error.
"""

import importlib.abc
import os
import pickle
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class RefuseKerasMtmm(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "keras_mtmm" or name.startswith("keras_mtmm."):
            raise ImportError(f"{name} must not be imported when serving an export")
        return None


sys.meta_path.insert(0, RefuseKerasMtmm())

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def batches(inputs, size):
    rows = len(next(iter(inputs.values())))
    for start in range(0, rows, size):
        yield {name: values[start : start + size] for name, values in inputs.items()}


def main(export_dir, inputs_path, outputs_path, sizes):
    with open(inputs_path, "rb") as handle:
        inputs = pickle.load(handle)
    results = {}
    serving = tf.saved_model.load(export_dir).signatures["serving_default"]
    for size in sizes:
        parts = [serving(**{k: tf.constant(v) for k, v in batch.items()}) for batch in batches(inputs, size)]
        for name in parts[0]:
            results[f"tf2/{size}/{name}"] = np.concatenate([p[name].numpy() for p in parts])

    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
        signature = meta_graph.signature_def["serving_default"]
        fetches = {name: info.name for name, info in signature.outputs.items()}
        for size in sizes:
            parts = []
            for batch in batches(inputs, size):
                feed = {signature.inputs[name].name: values for name, values in batch.items()}
                parts.append(session.run(fetches, feed_dict=feed))
            for name in fetches:
                results[f"tf1/{size}/{name}"] = np.concatenate([p[name] for p in parts])
    assert not any(m == "keras_mtmm" or m.startswith("keras_mtmm.") for m in sys.modules)
    np.savez(outputs_path, **{key.replace("/", "__"): value for key, value in results.items()})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], [int(s) for s in sys.argv[4:]])
