"""Shared fixtures: a tiny demo config and one tiny trained + exported run per session."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"

# A few hundred rows, small encoders, two short epochs: seconds, not minutes.
# A 2-task, 2-modality tiny model (image + categorical; premium binary, price regression), 2 steps.
TWO_BY_TWO = [
    'modalities={"image": {"type": "image", "columns": ["image"], "image_size": [16, 16], '
    '"encoder": {"type": "cnn", "filters": [8], "units": 16}}, '
    '"categorical": {"type": "categorical", "columns": ["material", "region"], "encoder": {"units": 8}}}',
    'tasks={"premium": {"type": "binary", "label": "premium"}, "price": {"type": "regression", "label": "price"}}',
    "training.epochs=1",
    "training.steps_per_epoch=2",
]
TINY_OVERRIDES = [
    "data.num_examples=240",
    "data.validation_fraction=0.2",
    "data.test_fraction=0.2",
    "training.epochs=2",
    "training.batch_size=32",
    "modalities.image.image_size=[16, 16]",
    "modalities.image.encoder.filters=[8]",
    "sharing.shared_units=[32]",
    "sharing.tower_units=[16]",
]


def global_tf_state() -> dict:
    """The process-wide TensorFlow / Keras settings a test (or `train`) can change."""
    import keras
    import tensorflow as tf
    from tensorflow.python.eager import context
    from tensorflow.python.framework import config as tf_config

    return {
        "global_seed": context.global_seed(),
        "op_determinism": tf_config.is_op_determinism_enabled(),
        "functions_run_eagerly": tf.config.functions_run_eagerly(),
        "floatx": keras.config.floatx(),
        "epsilon": keras.config.epsilon(),
        "image_data_format": keras.config.image_data_format(),
        "dtype_policy": keras.config.dtype_policy().name,
    }


def restore_global_tf_state(state: dict) -> None:
    import keras
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    if global_tf_state() == state:
        return  # resetting the global seed also resets TF's op-seed counter: only when it changed
    tf.random.set_seed(state["global_seed"])
    (tf_config.enable_op_determinism if state["op_determinism"] else tf_config.disable_op_determinism)()
    tf.config.run_functions_eagerly(state["functions_run_eagerly"])
    keras.config.set_floatx(state["floatx"])
    keras.config.set_epsilon(state["epsilon"])
    keras.config.set_image_data_format(state["image_data_format"])
    keras.config.set_dtype_policy(state["dtype_policy"])


_PRISTINE: dict = {}


def pytest_configure(config):
    """pytest-randomly shuffles the test order; it must not also reseed `random`/NumPy between a test's
    fixtures and its body (`--randomly-dont-reset-seed`): that would override the seeds the tests' own
    fixtures set (e.g. `keras.utils.set_random_seed(0)`) with one that changes from run to run."""
    if hasattr(config.option, "randomly_reset_seed"):
        config.option.randomly_reset_seed = False


_OUTCOMES: dict[str, str] = {}  # nodeid -> outcome, for the reliability census


def pytest_runtest_logreport(report):
    """Keep each test's outcome (its call phase; a skip or a failing fixture in setup)."""
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _OUTCOMES[report.nodeid] = report.outcome


def pytest_terminal_summary(terminalreporter):
    """The reliability census (tests/reliability/census.py) of the cases this run tried."""
    from tests.reliability.census import summary

    lines = summary(_OUTCOMES)
    if lines:
        terminalreporter.write_sep("-", "reliability census: cases tried and handled per family")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_sessionstart(session):
    _PRISTINE.update(global_tf_state())  # before any fixture or test has run in this process


@pytest.fixture(autouse=True)
def _isolated_tf_state():
    """Every test runs in, and leaves, the global TF/Keras state the process started with.

    `keras.utils.set_random_seed`, `train` (which seeds and, with
    `training.deterministic`, enables op determinism), mixed precision and the
    like are process-wide: without this, a test's outcome could depend on
    which tests ran before it in the same pytest worker. Session fixtures
    (e.g. `tiny_run`, which trains) are set up before this fixture, so their
    leftovers are undone here too, before the test body.
    """
    restore_global_tf_state(_PRISTINE)
    yield
    restore_global_tf_state(_PRISTINE)


@pytest.fixture(scope="session")
def tiny_config_factory():
    """Build the tiny demo config, with extra `--set` style overrides."""
    from keras_mtmm.config.loading import load_config

    def make(*overrides: str):
        return load_config(DEMO_CONFIG, [*TINY_OVERRIDES, *overrides])

    return make


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_config_factory):
    """One tiny demo training run with its export (shared by the end-to-end tests)."""
    from keras_mtmm.training.run import train

    root = tmp_path_factory.mktemp("tiny_run")
    config = tiny_config_factory()
    return train(config, output_dir=root / "run", export_dir=root / "saved_models", verbose=0)


@pytest.fixture(scope="session")
def untrained_factory():
    """`make(config, folder) -> (network, preprocessor)`: adapted on the config's training split and built,
    not trained. For tests of what a model computes (gates, weights, shapes), not of what it learns:
    a `train` call costs its tracing, evaluation and checkpoints (tens of seconds on 2 cores)."""
    from keras_mtmm.data.tables import load_splits
    from keras_mtmm.models.network import build_model
    from keras_mtmm.preprocessing.preprocessor import Preprocessor
    from keras_mtmm.training.run_guards import adapt_preprocessor

    def make(config, folder):
        preprocessor = Preprocessor.from_settings(config)
        adapt_preprocessor(preprocessor, config, load_splits(config)["train"], Path(folder) / "preprocessor")
        return build_model(config, preprocessor), preprocessor

    return make


def write_demo_csv(folder: Path, rows: int, seed: int = 3) -> Path:
    """`folder/items.csv` from demo rows, with PNG files under `folder/images/`.

    Columns: picture (every 17th empty), description, weight_kg, material,
    shape, premium (about 30% unlabelled), price, tags (multilabel: the
    material, plus "heavy" above 2 kg).
    """
    import csv

    import numpy as np

    from keras_mtmm.data.demo import generate_demo

    (folder / "images").mkdir(parents=True, exist_ok=True)
    table = generate_demo(rows, seed=seed, image_size=16)
    rng = np.random.default_rng(0)
    path = folder / "items.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["picture", "description", "weight_kg", "material", "shape", "premium", "price", "tags"])
        for row in range(rows):
            image = ""
            if row % 17:  # every 17th image is missing
                image = f"images/{row}.png"
                (folder / image).write_bytes(table["image"][row])
            weight = "" if np.isnan(table["weight_kg"][row]) else f"{table['weight_kg'][row]:.3f}"
            price = "" if np.isnan(table["price"][row]) else f"{table['price'][row]:.2f}"
            tags = "|".join(t for t in (table["material"][row], "heavy" if weight and float(weight) > 2 else "") if t)
            premium = table["premium"][row] if rng.random() > 0.3 else ""  # 30% unlabelled
            writer.writerow(
                [image, table["description"][row], weight, table["material"][row], table["shape"][row], premium]
                + [price, tags]
            )
    return path


@pytest.fixture(scope="session")
def weighting_batch(tmp_path_factory, tiny_config_factory):
    """`(config, preprocessor, inputs, targets, masks)`: 32 preprocessed training rows of the tiny demo,
    for one `train_on_batch` of a compiled model (the weighting strategies' in-step tests)."""
    import numpy as np

    from keras_mtmm.data.tables import load_splits
    from keras_mtmm.preprocessing.preprocessor import Preprocessor

    config = tiny_config_factory()
    splits = load_splits(config)
    preprocessor = Preprocessor.from_settings(config)
    preprocessor.adapt(splits["train"], tmp_path_factory.mktemp("weighting_batch"))
    table = {name: values[:32] for name, values in splits["train"].items()}
    inputs = {k: np.asarray(v) for k, v in preprocessor.transform(preprocessor.raw_inputs(table)).items()}
    targets, masks = preprocessor.encode_labels(table)
    return config, preprocessor, inputs, targets, masks
