"""A TF Hub audio module as the audio encoder: YAMNet's interface (one waveform in, per-frame outputs in a
tuple), written here as a tiny SavedModel; the pitch is learnt from it, and the export takes WAV bytes."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.data.tables import load_splits
from keras_mtmm.data.tones import write_tones
from keras_mtmm.layers.encoders.hub import HubEncoder
from tests.training.test_audio_end_to_end import tones_config

WIDTH = 24


class WaveformFrames(tf.Module):
    """As YAMNet: a waveform `[samples]` -> (scores [frames, 3], embeddings [frames, WIDTH], spectrum)."""

    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(tf.random.stateless_normal([129, WIDTH], seed=[5, 6]) / 4.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, waveform):
        spectrum = tf.math.log1p(tf.abs(tf.signal.stft(waveform[None], 256, 128, 256)[0]))  # [frames, 129]
        embeddings = tf.tanh(spectrum @ self.kernel)
        return tf.nn.softmax(embeddings[:, :3]), embeddings, spectrum


class BatchedFrames(WaveformFrames):
    """The same over a batch: `[B, samples]` -> {"embeddings": [B, frames, WIDTH]}."""

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def __call__(self, waveforms):
        spectrum = tf.math.log1p(tf.abs(tf.signal.stft(waveforms, 256, 128, 256)))
        return {"embeddings": tf.tanh(spectrum @ self.kernel)}


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio_modules")
    tf.saved_model.save(WaveformFrames(), str(root / "frames"))
    tf.saved_model.save(BatchedFrames(), str(root / "batched"))
    return root


def test_a_module_of_one_waveform_is_mapped_over_the_batch_and_its_frames_averaged(modules):
    waveforms = tf.random.stateless_uniform([3, 4000], seed=[1, 2], minval=-1, maxval=1)
    one_by_one = HubEncoder(str(modules / "frames"), units=8, output_key="1", batched=False)
    batched = HubEncoder(str(modules / "batched"), units=8)
    features = {}
    for name, encoder in (("one", one_by_one), ("batch", batched)):
        encoder(waveforms)
        features[name] = np.asarray(encoder._call_module(waveforms, False))
    expected = WaveformFrames()(waveforms[0])[1].numpy().mean(axis=0)
    np.testing.assert_allclose(features["one"][0], expected, atol=1e-5)
    np.testing.assert_allclose(features["one"], features["batch"], atol=1e-5)


def test_the_pitch_is_learnt_from_a_hub_module_and_the_export_takes_wav_bytes(modules, tmp_path):
    from keras_mtmm.training.run import train

    raw = tones_config(write_tones(tmp_path / "data", 300, seed=1))
    raw["modalities"]["clip"]["encoder"] = {
        "type": "hub",
        "units": 32,
        "hub": {"handle": str(modules / "frames"), "output_key": "1", "batched": False},
    }
    raw["training"]["learning_rate"] = 0.01
    config = config_from_dict(raw)
    result = train(config, output_dir=tmp_path / "run", export_dir=tmp_path / "saved_models", verbose=0)
    assert result.metrics["tasks"]["pitch"]["accuracy"] >= 0.9, result.metrics["tasks"]
    clips = result.preprocessor.raw_inputs(load_splits(config)["test"])["clip"][:8]
    served = tf.saved_model.load(str(result.export_path)).signatures["serving_default"](clip=tf.constant(clips))
    in_memory = result.model(result.preprocessor.transform({"clip": tf.constant(clips)}))
    np.testing.assert_allclose(served["pitch"].numpy(), np.asarray(in_memory["pitch"]), atol=1e-5)
