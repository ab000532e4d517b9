"""PNG encoding in NumPy + zlib (the demo's and the tests' images; no imaging library)."""

from __future__ import annotations

import struct
import zlib

import numpy as np

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode an RGB uint8 image as PNG bytes.

    ``pixels`` must be a uint8 array of shape [height, width, 3]. Uses
    8-bit truecolour, no interlacing and filter type 0 (None) on every row;
    compression is plain zlib. Pure numpy + zlib.

    Raises:
        ValueError: if ``pixels`` is not a non-empty uint8 [H, W, 3] array.
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(
            f"pixels must be a uint8 array of shape [H, W, 3], got dtype {pixels.dtype} and shape {pixels.shape}"
        )
    height, width, _ = pixels.shape
    if height < 1 or width < 1:
        raise ValueError(f"pixels must have positive height and width, got shape {pixels.shape}")
    # Each scanline is a filter-type byte (0 = None) followed by the raw RGB bytes.
    scanlines = np.zeros((height, 1 + 3 * width), dtype=np.uint8)
    scanlines[:, 1:] = pixels.reshape(height, 3 * width)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"".join(
        (
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 6)),
            _png_chunk(b"IEND", b""),
        )
    )


def _png_chunk(chunk_type: bytes, data: bytes) -> bytes:
    """Build one PNG chunk: length, type, data, CRC-32 of type + data."""
    crc = zlib.crc32(chunk_type + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + chunk_type + data + struct.pack(">I", crc)
