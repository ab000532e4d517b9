"""TF Hub encoders: offline handles, frozen vs fine-tuned, `.keras` round trip, exports that outlive the module.

The tests write their own tiny hub modules with `tf.saved_model.save`: a text
embedding that takes raw strings and keeps its vocabulary as an asset, and an
image feature vector over float32 [B, H, W, 3]; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from keras_mtmm.config.hub_handles import resolve_hub_handle
from keras_mtmm.errors import ConfigError
from keras_mtmm.layers.encoders.hub import HubEncoder
from tests.conftest import DEMO_CONFIG, REPO_ROOT

HERE = Path(__file__).resolve().parents[1]  # tests/
VOCABULARY = ("circle", "square", "triangle", "red", "green", "blue", "yellow")
WIDTH = 4
SEED = 0


class TextEmbedding(tf.Module):
    """Raw strings [B] -> mean of the token embeddings [B, WIDTH]; unknown words share one vector."""

    def __init__(self, vocabulary_file: str):
        super().__init__()
        self.vocabulary = tf.saved_model.Asset(vocabulary_file)
        initializer = tf.lookup.TextFileInitializer(
            self.vocabulary,
            tf.string,
            tf.lookup.TextFileIndex.WHOLE_LINE,
            tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER,
        )
        self.table = tf.lookup.StaticHashTable(initializer, default_value=len(VOCABULARY))
        self.embeddings = tf.Variable(tf.random.stateless_normal([len(VOCABULARY) + 1, WIDTH], seed=[1, 2]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, texts):
        tokens = tf.strings.split(tf.strings.lower(texts))
        vectors = tf.ragged.map_flat_values(tf.gather, self.embeddings, self.table.lookup(tokens))
        count = tf.cast(tf.maximum(tokens.row_lengths(), 1), tf.float32)[:, None]
        return tf.reduce_sum(vectors, axis=1) / count


class ImageFeatures(tf.Module):
    """float32 images [B, H, W, 3] in [0, 1] -> tanh(mean colour · kernel + bias), [B, WIDTH]."""

    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(tf.random.stateless_normal([3, WIDTH], seed=[3, 4]))
        self.bias = tf.Variable(tf.zeros([WIDTH]))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def __call__(self, images):
        return tf.tanh(tf.reduce_mean(images, axis=[1, 2]) @ self.kernel + self.bias)


class DictImageFeatures(tf.Module):
    """An image module with a `training` argument, dict outputs and a named signature."""

    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(tf.random.stateless_normal([3, WIDTH], seed=[7, 8]))

    @tf.function
    def __call__(self, images, training=False):
        pooled = tf.reduce_mean(images, axis=[1, 2]) @ self.kernel
        return {"pooled": 2.0 * pooled if training else pooled, "first": pooled[:, :1]}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def features(self, images):
        return self.__call__(images, training=False)


@pytest.fixture
def hub_modules(tmp_path):
    """(text module folder, image module folder); the vocabulary's source file is gone once saved."""
    source = tmp_path / "source_vocabulary.txt"
    source.write_text("".join(f"{word}\n" for word in VOCABULARY), encoding="utf-8")
    text_dir, image_dir = tmp_path / "hub" / "text_embedding", tmp_path / "hub" / "image_features"
    tf.saved_model.save(TextEmbedding(str(source)), str(text_dir))
    tf.saved_model.save(ImageFeatures(), str(image_dir))
    source.unlink()
    return text_dir, image_dir


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def fit_tiny(encoder: HubEncoder, inputs: tf.Tensor, steps: int = 3) -> keras.Model:
    """Input -> encoder -> Dense(1), a few SGD steps towards ones."""
    dtype = "string" if inputs.dtype == tf.string else "float32"
    model_input = keras.Input(shape=inputs.shape[1:], dtype=dtype, name="x")
    model = keras.Model(model_input, keras.layers.Dense(1, name="out")(encoder(model_input)))
    model.compile(keras.optimizers.SGD(0.5), "mse")
    data = tf.data.Dataset.from_tensors((inputs, tf.ones([inputs.shape[0], 1]))).repeat(steps)
    model.fit(data, epochs=1, shuffle=False, verbose=0)
    return model


def text_batch() -> tf.Tensor:
    return tf.constant(["red circle", "a blue square", "", "green triangle thanks", "yellow"])


def image_batch() -> tf.Tensor:
    return tf.random.stateless_uniform([5, 8, 8, 3], seed=[5, 6])


@pytest.mark.parametrize("modality", ["text", "image"])
@pytest.mark.parametrize("fine_tune", [False, True], ids=["frozen", "fine_tuned"])
def test_module_variables_change_only_when_fine_tuned(hub_modules, modality, fine_tune):
    folder = hub_modules[0] if modality == "text" else hub_modules[1]
    keras.utils.set_random_seed(SEED)
    encoder = HubEncoder(handle=str(folder), units=8, fine_tune=fine_tune, name=f"{modality}_encoder")
    inputs = text_batch() if modality == "text" else image_batch()
    encoder(inputs)
    # Read through the module object itself: what its functions compute with.
    module_variables = [encoder.module.embeddings] if modality == "text" else [encoder.module.kernel]
    before = [v.numpy().copy() for v in module_variables]
    projection_before = encoder.projection.dense.kernel.numpy().copy()
    assert len(encoder.trainable_weights) == (len(encoder.weights) if fine_tune else 4)  # projection + norm

    fit_tiny(encoder, inputs)

    changed = [not np.allclose(b, v.numpy()) for b, v in zip(before, module_variables)]
    assert changed == [fine_tune] * len(changed)
    assert not np.allclose(projection_before, encoder.projection.dense.kernel.numpy()), "the projection always trains"


def test_training_argument_signature_and_output_key(tmp_path):
    module = DictImageFeatures()
    for training in (False, True):
        module.__call__.get_concrete_function(tf.TensorSpec([None, None, None, 3], tf.float32), training=training)
    folder = tmp_path / "dict_image_features"
    tf.saved_model.save(module, str(folder), signatures={"features": module.features})
    images = image_batch()

    # The module's `training` argument follows Keras' only when fine-tuning (as with hub.KerasLayer).
    keras.utils.set_random_seed(SEED)
    tuned = HubEncoder(handle=str(folder), units=16, fine_tune=True, output_key="pooled")
    assert np.any(tuned(images, training=False) > 0), "some projected feature passes the relu"
    assert not np.allclose(tuned(images, training=True), tuned(images, training=False))
    frozen = HubEncoder(handle=str(folder), units=16, output_key="pooled")
    np.testing.assert_allclose(frozen(images, training=True), frozen(images, training=False))

    assert HubEncoder(handle=str(folder), units=3, signature="features", output_key="first")(images).shape == (5, 3)
    with pytest.raises(ConfigError, match="set output_key to one of: first, pooled"):
        HubEncoder(handle=str(folder), units=3)(images)
    with pytest.raises(ConfigError, match="no signature 'serving'; choose one of: features"):
        HubEncoder(handle=str(folder), units=3, signature="serving")


def test_config_and_keras_round_trip_restore_fine_tuned_values(hub_modules, tmp_path):
    keras.utils.set_random_seed(SEED)
    encoder = HubEncoder(handle=str(hub_modules[0]), units=8, fine_tune=True, name="text_encoder")
    assert HubEncoder.from_config(encoder.get_config()).get_config() == encoder.get_config()
    inputs = text_batch()
    model = fit_tiny(encoder, inputs)
    original = tf.saved_model.load(str(hub_modules[0])).embeddings.numpy()
    assert not np.allclose(original, encoder.module.embeddings.numpy())

    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    reloaded_encoder = reloaded.get_layer("text_encoder")
    np.testing.assert_allclose(reloaded_encoder.module.embeddings.numpy(), encoder.module.embeddings.numpy())
    np.testing.assert_allclose(reloaded(inputs).numpy(), model(inputs).numpy(), rtol=1e-6, atol=1e-6)


def test_handles_resolve_offline_from_folders_and_the_hub_cache(hub_modules, tmp_path, monkeypatch, no_network):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    assert resolve_hub_handle(str(hub_modules[0])) == str(hub_modules[0])

    url = "https://tfhub.dev/keras-mtmm/tiny-text/1"
    with pytest.raises(ConfigError) as missing:
        resolve_hub_handle(url, "modalities.text.encoder.handle")
    assert url in str(missing.value) and "TFHUB_CACHE_DIR" in str(missing.value) and str(cache) in str(missing.value)

    # Where hub.resolve would have downloaded it: <cache>/<sha1(handle)>.
    shutil.copytree(hub_modules[0], cache / hashlib.sha1(url.encode("utf8")).hexdigest())
    encoder = HubEncoder(handle=url, units=3)
    assert encoder(text_batch()).shape == (5, 3)

    with pytest.raises(ConfigError, match="without saved_model.pb"):
        resolve_hub_handle(str(tmp_path))
    with pytest.raises(ConfigError, match="'missing/module' is neither a local folder nor a URL handle"):
        resolve_hub_handle("missing/module")


def test_unresolvable_handle_exits_2_naming_it_and_the_cache(tmp_path):
    handle = "https://tfhub.dev/google/nnlm-en-dim50/2"
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["modalities"]["text"]["encoder"] = {"type": "hub", "handle": handle, "units": 8}
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    env = {**_environment(), "TFHUB_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "train.py"),
            "--config",
            str(config_path),
            "--output-dir",
            str(tmp_path / "run"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: modalities.text.encoder.handle: hub handle '{handle}'"), last
    assert "TFHUB_CACHE_DIR" in last and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_export_with_hub_encoders_serves_after_the_modules_are_deleted(hub_modules, tmp_path, tiny_config_factory):
    from keras_mtmm.data.tables import load_splits
    from keras_mtmm.training.run import train

    text_dir, image_dir = hub_modules
    config = tiny_config_factory(
        "training.epochs=1",
        "modalities.text.encoder.type=hub",
        f"modalities.text.encoder.handle={text_dir}",
        "modalities.text.encoder.trainable=true",
        "modalities.image.encoder.type=hub",
        f"modalities.image.encoder.handle={image_dir}",
    )
    result = train(config, output_dir=tmp_path / "run", export_dir=tmp_path / "saved_models", verbose=0)
    assert result.preprocessor.model_input_specs()["text"] == ((), "string")
    assert not (result.run_dir / "preprocessor" / "vocabulary_text.txt").exists()
    fine_tuned = result.model.get_layer("text_encoder").module.embeddings.numpy()
    assert not np.allclose(fine_tuned, tf.saved_model.load(str(text_dir)).embeddings.numpy())
    assert (result.export_path / "assets" / "source_vocabulary.txt").is_file(), "the module's asset is exported"

    raw = result.preprocessor.raw_inputs(load_splits(config)["test"])
    raw["text"][0] = ""
    raw["text"][1] = "unheard of words"
    expected = result.model.predict(result.preprocessor.transform(raw), verbose=0)
    shutil.rmtree(text_dir.parent)  # both hub modules: the export must carry all it needs

    inputs_path, outputs_path = tmp_path / "inputs.pkl", tmp_path / "outputs.npz"
    inputs_path.write_bytes(pickle.dumps(raw))
    sizes = ["1", str(len(raw["text"]))]
    served = subprocess.run(
        [sys.executable, str(HERE / "support" / "plain_tf_predict.py"), str(result.export_path), str(inputs_path)]
        + [str(outputs_path), *sizes],
        cwd=tmp_path,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert served.returncode == 0, served.stderr[-3000:]
    outputs = np.load(outputs_path)
    for loader in ("tf2", "tf1"):
        for size in sizes:
            for task in config.tasks:
                np.testing.assert_allclose(
                    outputs[f"{loader}__{size}__{task}"], expected[task], rtol=1e-5, atol=1e-5, err_msg=task
                )

    # evaluate.py reads the export's stored config; its hub handles are gone, the export is not.
    from keras_mtmm.evaluation.evaluate import evaluate_model

    report = evaluate_model(result.export_path, quiet=True)
    assert set(report["tasks"]) == set(config.tasks) and report["tasks"]["shape"]["labelled"] > 0


def _environment() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
