"""Audio: WAV bytes decoded, resampled, cropped and turned into log-mel frames in TensorFlow; bad WAVs refused."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.data.audio import BadAudio, check_audio_bytes, read_audio_bytes
from keras_mtmm.data.tones import wav_bytes
from keras_mtmm.preprocessing.audio_decoding import decode_audio, log_mel_spectrogram, resample


def sine(frequency: float, sample_rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * frequency * np.arange(int(sample_rate * seconds)) / sample_rate)


def test_resampling_is_linear_interpolation_and_the_identity_at_the_same_rate():
    samples = tf.constant([0.0, 1.0, 0.0, -1.0], tf.float32)
    np.testing.assert_allclose(resample(samples, tf.constant(4), 4, 10).numpy(), samples.numpy())
    # 4 Hz -> 8 Hz: every second output sample is the midpoint; past the last sample it is held
    np.testing.assert_allclose(
        resample(samples, tf.constant(4), 8, 10).numpy(), [0, 0.5, 1, 0.5, 0, -0.5, -1, -1], atol=1e-6
    )
    np.testing.assert_allclose(resample(samples, tf.constant(8), 4, 10).numpy(), [0.0, 0.0])  # every other one
    assert resample(samples, tf.constant(4), 8, 3).shape == (3,)  # only what the clip length keeps


def test_decoding_resamples_mixes_to_mono_crops_and_pads():
    at_8k = wav_bytes(sine(600.0, 8000, 0.5), 8000)
    decoded = decode_audio(tf.constant([at_8k, b""]), 16000, 16000).numpy()
    assert decoded.shape == (2, 16000)
    # the first 0.5 s is the tone at 16 kHz; a midpoint of linear interpolation is off by at most
    # A (1 - cos(pi f / fs)) = 0.5 (1 - cos(pi 600 / 8000)) = 0.0138 (plus the 16-bit rounding)
    bound = 0.5 * (1 - np.cos(np.pi * 600 / 8000)) + 1 / 32768
    np.testing.assert_allclose(decoded[0, :7990], sine(600.0, 16000, 0.5)[:7990], atol=bound)
    np.testing.assert_allclose(decoded[0, :7990:2], sine(600.0, 8000, 0.5)[:3995], atol=1 / 32768)  # the samples
    assert not decoded[0, 8002:].any() and not decoded[1].any()  # padded with silence; "" is silence
    stereo = io.BytesIO()
    with wave.open(stereo, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(8000)
        left, right = np.full(800, 8000, "<i2"), np.full(800, -4000, "<i2")
        out.writeframes(np.stack([left, right], axis=1).tobytes())
    mono = decode_audio(tf.constant([stereo.getvalue()]), 8000, 400).numpy()
    np.testing.assert_allclose(mono, np.full((1, 400), 2000 / 32768), atol=1e-6)  # averaged, cropped


def test_the_spectrogram_peak_follows_the_pitch():
    clips = tf.constant([sine(frequency, 8000, 0.5) for frequency in (300.0, 600.0, 1200.0, 2400.0)], tf.float32)
    mels = log_mel_spectrogram(clips, 8000, 25.0, 10.0, 40).numpy()
    assert mels.shape == (4, 48, 40)  # 1 + (4000 - 200) // 80 frames
    peaks = mels.mean(axis=1).argmax(axis=1)
    assert list(peaks) == sorted(peaks) and len(set(peaks)) == 4, peaks
    silence = log_mel_spectrogram(tf.zeros([1, 4000]), 8000, 25.0, 10.0, 40).numpy()
    np.testing.assert_allclose(silence, np.log(1e-6), rtol=1e-5)  # finite, not -inf


def pcm(bits: int, tag: int = 1) -> bytes:
    """A WAV header of another sample format than 16-bit PCM, with a little data."""
    data = b"\x00" * 64
    fmt = tag.to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    fmt += (8000 * bits // 8).to_bytes(4, "little") + (bits // 8).to_bytes(2, "little") + bits.to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + len(data).to_bytes(4, "little") + data
    return b"RIFF" + len(body).to_bytes(4, "little") + body


@pytest.mark.parametrize(
    "content, what",
    [
        (b"not a wav at all", "is not a WAV file"),
        (pcm(8), "8-bit PCM audio"),
        (pcm(32, tag=3), "32-bit float audio"),
        (wav_bytes(sine(300.0, 8000, 0.1), 8000)[:30], "not a WAV file"),
        (wav_bytes(sine(300.0, 8000, 0.1), 8000)[:-101], "not a readable 16-bit PCM WAV"),
    ],
)
def test_a_wav_the_decoder_cannot_read_is_refused_with_its_reason(content, what):
    with pytest.raises(BadAudio, match=what) as raised:
        check_audio_bytes(content, "clips.csv:3: column 'clip'", "'a.wav'")
    assert raised.value.where == "clips.csv:3: column 'clip'"


def test_a_wav_cell_is_read_relative_to_the_data_file(tmp_path):
    content = wav_bytes(sine(300.0, 8000, 0.1), 8000)
    (tmp_path / "a.wav").write_bytes(content)
    assert read_audio_bytes("a.wav", tmp_path, "d.csv:2") == content
    assert read_audio_bytes("", tmp_path, "d.csv:2") == b""
    with pytest.raises(BadAudio, match="cannot read audio"):
        read_audio_bytes("missing.wav", tmp_path, "d.csv:2")
