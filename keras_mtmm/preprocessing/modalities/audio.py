"""Audio: WAV bytes `tf.string [B]` -> a standardized log-mel spectrogram `float32 [B, frames, mels, 1]`,
or, for a `hub` encoder (`waveform`), the waveform itself, `float32 [B, samples]` in [-1, 1] (mono,
at `sample_rate`, cropped or zero-padded to `duration_s`): TF Hub audio modules (YAMNet) take that.

The decoding, resampling, cropping and spectrogram run in TensorFlow (`audio_decoding`), in
training's input pipeline and inside the export alike. `adapt` learns one mean and one standard
deviation of the training clips' log-mel values, so the encoder reads values near [-1, 1]. An
empty string (a missing clip) gives the all-zero spectrogram (the mean, after standardizing).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import keras
import tensorflow as tf

from keras_mtmm.config.bounds import Bound, positive
from keras_mtmm.data.audio import check_audio_bytes, read_audio_bytes
from keras_mtmm.errors import ConfigError
from keras_mtmm.preprocessing.audio_decoding import decode_audio, frame_sizes, log_mel_spectrogram, num_frames
from keras_mtmm.preprocessing.modalities.base import ModalityType
from keras_mtmm.registry import MODALITY_TYPES

ADAPT_CLIPS = 256  # the training clips the log-mel mean and std are measured on


@dataclass
class AudioModalityConfig:
    """`modalities.<m>.audio`: the rate clips are resampled to, their length, and the spectrogram's frames and bins."""

    sample_rate: int = 16000
    duration_s: float = 1.0
    num_mel_bins: int = 40
    frame_ms: float = 25.0
    hop_ms: float = 10.0


def num_samples(spec: dict) -> int:
    return int(round(spec["sample_rate"] * spec["duration_s"]))


def spectrogram_shape(spec: dict) -> tuple[int, int]:
    """(frames, mel bins) of one clip."""
    frame_length, frame_step, _ = frame_sizes(spec["sample_rate"], spec["frame_ms"], spec["hop_ms"])
    return num_frames(num_samples(spec), frame_length, frame_step), int(spec["num_mel_bins"])


@MODALITY_TYPES.register("audio")
class AudioModality(ModalityType):
    name = "audio"
    config_class = AudioModalityConfig
    checks = (
        positive("sample_rate", "16000"),
        # (every clip becomes duration_s x sample_rate floats, then its spectrogram, per example)
        Bound("duration_s", "more than 0 and at most 60 seconds", lambda seconds: 0 < seconds <= 60, "1.0"),
        positive("num_mel_bins", "40"),
        Bound("frame_ms", "> 0", lambda ms: ms > 0, "25"),
        Bound("hop_ms", "> 0", lambda ms: ms > 0, "10"),
    )
    default_encoder = "cnn"
    single_column = True
    cells = "file"

    @classmethod
    def check_config(cls, options, modality, config, where: str) -> None:
        """A clip long enough for one frame, and no more mel bins than FFT bins."""
        spec = {"type": "audio", **dataclasses.asdict(options)}
        frame_length, _, fft_length = frame_sizes(options.sample_rate, options.frame_ms, options.hop_ms)
        if num_samples(spec) < frame_length:
            raise ConfigError(
                f"{where}.duration_s",
                f"{options.duration_s} s is shorter than one {options.frame_ms} ms frame",
                "use a longer duration_s or a shorter frame_ms",
            )
        if options.num_mel_bins > fft_length // 2:
            raise ConfigError(
                f"{where}.num_mel_bins",
                f"{options.num_mel_bins} mel bins over {fft_length // 2 + 1} FFT bins leave some empty",
                f"use at most {fft_length // 2} bins, or a longer frame_ms",
            )

    def read_file(self, cell, folder, where, max_bytes):
        return read_audio_bytes(cell, folder, where, max_bytes)

    def check_bytes(self, content, where, what):
        return check_audio_bytes(content, where, what)

    def decodes(self, encoded):
        return tf.reduce_max(tf.abs(tf.audio.decode_wav(encoded)[0]))

    def adapt(self, name, spec, values, folder):
        if spec.get("waveform", False):
            return None
        clips = [value for value in values[:ADAPT_CLIPS] if value]
        if not clips:
            return {"mean": 0.0, "std": 1.0}
        features = self.spectrogram(spec, tf.constant(clips, tf.string)).numpy()
        return {"mean": float(features.mean()), "std": float(max(features.std(), 1e-6))}

    def spectrogram(self, spec, value):
        samples = decode_audio(value, int(spec["sample_rate"]), num_samples(spec))
        return log_mel_spectrogram(samples, spec["sample_rate"], spec["frame_ms"], spec["hop_ms"], spec["num_mel_bins"])

    def layers(self, name, spec, learnt, folder, vocabularies):
        if spec.get("waveform", False):
            return None
        layer = keras.layers.Normalization(
            axis=None, mean=learnt["mean"], variance=learnt["std"] ** 2, name=f"{name}_normalizer"
        )
        layer.build((None, *spectrogram_shape(spec)))
        return [layer]

    def transform(self, spec, layers, value):
        if spec.get("waveform", False):  # (a missing clip decodes to silence)
            return decode_audio(value, int(spec["sample_rate"]), num_samples(spec))
        standardized = layers[0](self.spectrogram(spec, value))
        present = tf.reshape(tf.cast(self.present(spec, value), tf.float32), [-1, 1, 1])
        return (standardized * present)[..., None]

    def present(self, spec, value):
        return tf.strings.length(value) > 0

    def model_input(self, spec):
        if spec.get("waveform", False):
            return (num_samples(spec),), "float32"
        return (*spectrogram_shape(spec), 1), "float32"

    def raw_input(self, name, spec):
        return tf.TensorSpec([None], tf.string, name=name)
