"""WAV files and WAV bytes as data cells: read, checked (16-bit PCM that TensorFlow decodes), or refused.

A CSV cell names a WAV file (relative to the CSV's folder); a Parquet cell may
also hold the bytes themselves. The bytes must be what `tf.audio.decode_wav`
(the decoder training and serving use) reads: RIFF/WAVE, 16-bit PCM, any
sample rate and channel count (channels are averaged to one, the rate is
resampled to the modality's `sample_rate`).
"""

from __future__ import annotations

import struct
from pathlib import Path

from keras_mtmm.data.images import MAX_FILE_BYTES, SKIP, BadFile, read_file_cell


class BadAudio(BadFile):
    """An audio cell names a file that cannot be read or decoded."""


def read_audio_bytes(cell: str, folder: Path, where: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """Read a WAV file named in a CSV cell (a regular file of at most `max_bytes`); "" is a missing clip."""
    path, content = read_file_cell(cell, folder, where, max_bytes, "audio", BadAudio)
    return check_audio_bytes(content, where, f"'{path}'") if path else b""


def wav_format(content: bytes) -> tuple[int, int, int, int] | None:
    """(format tag, channels, sample rate, bits per sample) of a RIFF/WAVE header; None if it has none."""
    if len(content) < 12 or content[:4] != b"RIFF" or content[8:12] != b"WAVE":
        return None
    offset = 12
    while offset + 8 <= len(content):
        chunk, size = content[offset : offset + 4], struct.unpack("<I", content[offset + 4 : offset + 8])[0]
        if chunk == b"fmt " and size >= 16 and offset + 24 <= len(content):
            tag, channels, rate = struct.unpack("<HHI", content[offset + 8 : offset + 16])
            bits = struct.unpack("<H", content[offset + 22 : offset + 24])[0]
            return tag, channels, rate, bits
        offset += 8 + size + (size & 1)
    return None


def check_audio_bytes(content: bytes, where: str, what: str = "the audio bytes") -> bytes:
    """`content` itself when it is a WAV that `tf.audio.decode_wav` reads; a `BadAudio` naming `what` otherwise."""
    header = wav_format(content)
    if header is None:
        raise BadAudio(where, f"{what} is not a WAV file (no RIFF/WAVE header with a fmt chunk)", f"replace it, {SKIP}")
    tag, channels, rate, bits = header
    if tag not in (1, 0xFFFE) or bits != 16:
        kind = {1: "PCM", 3: "float", 0xFFFE: "extensible"}.get(tag, f"format {tag}")
        raise BadAudio(
            where,
            f"{what} is {bits}-bit {kind} audio; TensorFlow's decoder reads 16-bit PCM WAV",
            f"convert it (e.g. `sox in.wav -b 16 -e signed-integer out.wav`), {SKIP}",
        )
    if channels < 1 or rate < 1:
        raise BadAudio(where, f"{what} declares {channels} channels at {rate} Hz", f"replace it, {SKIP}")
    if not _decodes(content):
        raise BadAudio(where, f"{what} is not a readable 16-bit PCM WAV (truncated?)", f"replace or remove it, {SKIP}")
    return content


def _decodes(content: bytes) -> bool:
    """Whether TensorFlow's WAV decoder (the one training and serving use) reads these bytes."""
    import tensorflow as tf

    try:
        tf.audio.decode_wav(content)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        return False
    return True
