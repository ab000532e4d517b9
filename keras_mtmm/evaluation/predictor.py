"""Opening a model for prediction on raw inputs: an exported version (through its serving signature,
exactly as TF Serving runs it), a run's `.keras` checkpoint, or an in-memory network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_mtmm.errors import UserError
from keras_mtmm.evaluation.tracing import traced_once
from keras_mtmm.export.saved_model import is_saved_model, read_export_metadata
from keras_mtmm.run_folder import RunFolder


def read_model_files(model_path: str | Path) -> tuple[str, str, dict]:
    """(kind, resolved config YAML, metadata) of an export folder (`"export"`) or a run's `.keras` (`"keras"`)."""
    model_path = Path(model_path)
    if model_path.is_dir() and is_saved_model(model_path):
        return ("export", *read_export_metadata(model_path))
    if model_path.suffix == ".keras" and model_path.is_file():
        run = RunFolder(model_path.parent)
        try:
            config_yaml, metadata = run.config_yaml(), run.metadata()
        except OSError:
            raise UserError(
                "--model",
                f"'{model_path}' is not in a keras_mtmm run folder ({run.CONFIG}, {run.METADATA} beside it)",
                "pass a run folder's best.keras",
            ) from None
        return "keras", config_yaml, metadata
    raise UserError(
        "--model",
        f"'{model_path}' is neither an exported version folder (with saved_model.pb) nor a .keras file",
        "pass e.g. saved_models/demo/1 or runs/demo/best.keras",
    )


def load_predictor(model_path: str | Path, batch_size: int = 256):
    """Open an exported version folder or a `.keras` file for prediction on raw inputs.

    Returns:
        `(predict, config_yaml, metadata)`, where `predict(raw_batch) -> {task: array}`.
    """
    kind, config_yaml, metadata = read_model_files(model_path)
    if kind == "export":
        serving = tf.saved_model.load(str(model_path)).signatures["serving_default"]
        signature = serving.structured_input_signature[1]

        def predict(batch):
            inputs = {name: tf.constant(values, dtype=signature[name].dtype) for name, values in batch.items()}
            outputs = serving(**inputs)
            return {task: outputs[task].numpy() for task in metadata["tasks"]}

        return predict, config_yaml, metadata

    run = RunFolder(Path(model_path).parent)
    every_output = in_memory_predictor(run.load_network(Path(model_path).name), run.load_preprocessor())

    def predict(batch):
        outputs = every_output(batch)
        return {task: outputs[task] for task in metadata["tasks"]}

    return predict, config_yaml, metadata


def in_memory_predictor(model, preprocessor):
    """raw inputs -> every output of `model` (NumPy), through one traced function, as the export serves."""
    run = traced_once(lambda raw: model(preprocessor.transform(raw), training=False))

    def predict(batch):
        outputs = run({name: tf.constant(values) for name, values in batch.items()})
        return {name: np.asarray(value) for name, value in outputs.items()}

    return predict
