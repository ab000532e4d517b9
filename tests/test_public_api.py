"""The public API: what `import keras_mtmm` gives, and what it is enough for."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from keras_mtmm.data.tables import load_splits

from .conftest import REPO_ROOT

CHILD = """
import sys
import numpy as np
import keras_mtmm  # the only keras_mtmm import: it registers every layer
import keras

model = keras.models.load_model(sys.argv[1])
features = dict(np.load(sys.argv[2], allow_pickle=False))
outputs = model.predict(features, verbose=0)
np.savez(sys.argv[3], model_class=type(model).__name__, **outputs)
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
    for registry in ("SOURCES", "ENCODERS", "FUSIONS", "SHARINGS", "TASK_TYPES", "WEIGHTINGS"):
        assert getattr(keras_mtmm.registry, registry).names(), registry  # every registry filled by the import


def test_a_checkpoint_loads_with_plain_keras_after_only_importing_the_package(tiny_run, tiny_config_factory, tmp_path):
    features = tiny_run.preprocessor.transform(
        tiny_run.preprocessor.raw_inputs(load_splits(tiny_config_factory())["test"])
    )
    np.savez(tmp_path / "features.npz", **{name: np.asarray(value) for name, value in features.items()})
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(tiny_run.run_dir / "best.keras"),
            str(tmp_path / "features.npz"),
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
    assert str(served["model_class"]) == "MultiTaskModel"
    expected = tiny_run.model.predict(features, verbose=0)
    for task, values in expected.items():
        np.testing.assert_allclose(served[task], values, rtol=1e-5, atol=1e-6, err_msg=task)
