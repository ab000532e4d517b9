"""keras_mtmm: multi-task, multi-modal deep learning on Keras 3 / TensorFlow, served by TF Serving.

The public API:
    load_config(path, overrides)      the experiment config (YAML + `--set` overrides), validated
    train(config, ...)                train, evaluate and export an experiment; returns a `TrainResult`
    evaluate(model_path, ...)         per-task metrics of an export or `.keras` model (the metrics JSON)
    load_predictor(model_path)        `(predict, preprocessor, metadata)` for raw rows
    ServingClient(host, ...)          TF Serving over REST and gRPC

Importing the package imports every subpackage, so every registry (sources, encoders, fusion,
sharing, task types, weighting) is complete and `keras.models.load_model("best.keras")` finds
every keras_mtmm layer.
"""

from keras_mtmm.tf_start import quiet_tensorflow_start
from keras_mtmm.version import __version__

quiet_tensorflow_start()

# Each subpackage registers its implementations into keras_mtmm.registry's tables as it loads.
from keras_mtmm import tasks, weighting  # noqa: E402, F401
from keras_mtmm.config.loading import load_config  # noqa: E402
from keras_mtmm.data import sources, tfrecord  # noqa: E402, F401
from keras_mtmm.evaluation.evaluate import evaluate_model as evaluate  # noqa: E402
from keras_mtmm.evaluation.predictor import load_predictor  # noqa: E402
from keras_mtmm.layers import encoders, fusion, heads, sharing  # noqa: E402, F401
from keras_mtmm.serve.client import ServingClient  # noqa: E402
from keras_mtmm.training.run import train  # noqa: E402

__all__ = ["ServingClient", "__version__", "evaluate", "load_config", "load_predictor", "train"]
