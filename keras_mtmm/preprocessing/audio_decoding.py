"""WAV bytes -> a log-mel spectrogram, in TensorFlow (training's input pipeline and the served graph).

Each clip is decoded (`tf.audio.decode_wav`: 16-bit PCM), averaged to one channel, resampled to
the modality's `sample_rate` by linear interpolation (no anti-aliasing filter: record or convert
above the rate you train at), cropped or zero-padded to `duration_s`, and turned into
`log(mel(|STFT|) + 1e-6)` frames (`tf.signal`). The export holds these ops, so TF Serving takes WAV
bytes as they are and needs nothing else.
"""

from __future__ import annotations

import math

import tensorflow as tf

LOG_OFFSET = 1e-6  # inside the logarithm: log(0 + 1e-6) for silence, not -inf
LOWEST_MEL_HZ = 20.0


def frame_sizes(sample_rate: int, frame_ms: float, hop_ms: float) -> tuple[int, int, int]:
    """(frame length, frame step, FFT length) in samples: the FFT length is the next power of two."""
    frame_length = max(2, int(round(sample_rate * frame_ms / 1000.0)))
    frame_step = max(1, int(round(sample_rate * hop_ms / 1000.0)))
    return frame_length, frame_step, 2 ** math.ceil(math.log2(frame_length))


def num_frames(num_samples: int, frame_length: int, frame_step: int) -> int:
    """The STFT frames of `num_samples` samples (no end padding)."""
    return 1 + (num_samples - frame_length) // frame_step


def resample(samples: tf.Tensor, rate: tf.Tensor, target_rate: int, length: int) -> tf.Tensor:
    """The first `length` samples (fewer if the clip is shorter) of mono `samples` at `rate` Hz, resampled to
    `target_rate` by linear interpolation; the identity when the rates are equal."""
    count = tf.shape(samples)[0]
    ratio = tf.cast(rate, tf.float64) / float(target_rate)
    available = tf.cast(tf.math.ceil(tf.cast(count, tf.float64) / ratio), tf.int32)
    positions = tf.range(tf.minimum(available, length), dtype=tf.float64) * ratio
    low = tf.minimum(tf.cast(tf.floor(positions), tf.int32), count - 1)
    high = tf.minimum(low + 1, count - 1)
    fraction = tf.cast(positions - tf.cast(low, tf.float64), tf.float32)
    return tf.gather(samples, low) * (1.0 - fraction) + tf.gather(samples, high) * fraction


def decode_audio(wavs: tf.Tensor, sample_rate: int, num_samples: int) -> tf.Tensor:
    """WAV bytes [B] -> float32 [B, num_samples] in [-1, 1] at `sample_rate`; "" (a missing clip) gives zeros."""

    def decode_one(encoded):
        def decode():
            audio, rate = tf.audio.decode_wav(encoded)
            mono = tf.reduce_mean(audio, axis=1)
            clip = tf.cond(
                tf.shape(mono)[0] > 0,
                lambda: resample(mono, rate, sample_rate, num_samples),
                lambda: tf.zeros([0], tf.float32),
            )
            return tf.pad(clip, [[0, num_samples - tf.shape(clip)[0]]])

        clip = tf.cond(tf.strings.length(encoded) > 0, decode, lambda: tf.zeros([num_samples], tf.float32))
        clip.set_shape([num_samples])
        return clip

    return tf.map_fn(decode_one, wavs, fn_output_signature=tf.TensorSpec([num_samples], tf.float32))


def log_mel_spectrogram(
    samples: tf.Tensor, sample_rate: int, frame_ms: float, hop_ms: float, num_mel_bins: int
) -> tf.Tensor:
    """float32 [B, N] -> [B, frames, num_mel_bins]: `log(mel(|STFT|) + 1e-6)`."""
    frame_length, frame_step, fft_length = frame_sizes(sample_rate, frame_ms, hop_ms)
    magnitudes = tf.abs(tf.signal.stft(samples, frame_length, frame_step, fft_length=fft_length))
    mel_matrix = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins, fft_length // 2 + 1, sample_rate, LOWEST_MEL_HZ, sample_rate / 2.0
    )
    return tf.math.log(tf.tensordot(magnitudes, mel_matrix, 1) + LOG_OFFSET)
