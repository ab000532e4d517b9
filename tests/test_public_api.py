"""The public API: what `import keras_mtmm` gives, and what it is enough for."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np

from keras_mtmm.data.tables import load_splits
from tests.conftest import REPO_ROOT

CHILD = """
import sys
import numpy as np
import keras_mtmm  # the only keras_mtmm import: it registers every layer
import keras
import tensorflow as tf

model = keras.models.load_model(sys.argv[1])  # a copy of best.keras alone in a folder: no preprocessor/ beside it
raw = {name: tf.constant(values) for name, values in np.load(sys.argv[2], allow_pickle=True).items()}
outputs = model.predict(model.preprocessor.transform(raw), verbose=0)  # the Preprocessor travelled inside
np.savez(sys.argv[3], model_class=type(model).__name__, preprocessor=type(model.preprocessor).__name__, **outputs)
"""


def test_the_package_exports_the_public_api():
    import keras_mtmm
    from keras_mtmm.config.loading import load_config
    from keras_mtmm.evaluation.evaluate import evaluate_model
    from keras_mtmm.evaluation.predictor import load_predictor
    from keras_mtmm.serve.client import ServingClient
    from keras_mtmm.training.run import train

    assert keras_mtmm.load_config is load_config and keras_mtmm.train is train
    assert keras_mtmm.evaluate is evaluate_model and keras_mtmm.load_predictor is load_predictor
    assert keras_mtmm.ServingClient is ServingClient
    assert set(keras_mtmm.__all__) == {
        "load_config",
        "train",
        "evaluate",
        "load_predictor",
        "ServingClient",
        "__version__",
    }
    registries = (
        "SOURCES",
        "SAMPLERS",
        "ENCODERS",
        "FUSIONS",
        "SHARINGS",
        "TASK_TYPES",
        "WEIGHTINGS",
        "MODALITY_TYPES",
    )
    for registry in registries:
        assert getattr(keras_mtmm.registry, registry).names(), registry  # every registry filled by the import


def test_a_checkpoint_loads_with_plain_keras_after_only_importing_the_package(tiny_run, tiny_config_factory, tmp_path):
    """`keras.models.load_model(best.keras)` gives the training model with its adapted Preprocessor inside."""
    raw = tiny_run.preprocessor.raw_inputs(load_splits(tiny_config_factory())["test"])
    features = tiny_run.preprocessor.transform(raw)
    np.savez(tmp_path / "raw.npz", **raw)
    (tmp_path / "alone").mkdir()
    shutil.copyfile(tiny_run.run_dir / "best.keras", tmp_path / "alone" / "best.keras")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path / "alone" / "best.keras"),
            str(tmp_path / "raw.npz"),
            str(tmp_path / "out.npz"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    served = np.load(tmp_path / "out.npz")
    assert str(served["model_class"]) == "MultiTaskModel" and str(served["preprocessor"]) == "Preprocessor"
    expected = tiny_run.model.predict(features, verbose=0)
    for task, values in expected.items():
        np.testing.assert_allclose(served[task], values, rtol=1e-5, atol=1e-6, err_msg=task)
