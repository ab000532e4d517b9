"""Image cells that name something other than a modest image file: refused before anything is decoded."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest

from keras_mtmm.data.demo import encode_png
from keras_mtmm.data.images import MAX_IMAGE_PIXELS, BadImage, declared_size, read_image_bytes


def _png(width: int, height: int) -> bytes:
    return encode_png(np.zeros((height, width, 3), np.uint8))


def test_a_normal_image_is_read(tmp_path):
    (tmp_path / "a.png").write_bytes(_png(8, 6))
    assert declared_size(read_image_bytes("a.png", tmp_path, "x.csv:2")) == (8, 6)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(BadImage, match="is not a regular file"):
        read_image_bytes("pipe.png", tmp_path, "x.csv:2")


def test_a_device_or_folder_is_refused(tmp_path):
    with pytest.raises(BadImage, match="is not a regular file"):
        read_image_bytes("/dev/zero", tmp_path, "x.csv:2")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(BadImage, match="is not a regular file"):
        read_image_bytes("folder.png", tmp_path, "x.csv:2")


def test_a_file_over_the_size_limit(tmp_path):
    (tmp_path / "big.png").write_bytes(_png(64, 64))
    with pytest.raises(BadImage, match=r"over data.max_file_bytes \(10\)"):
        read_image_bytes("big.png", tmp_path, "x.csv:2", max_bytes=10)


def test_a_small_file_declaring_a_huge_image_is_refused_before_decoding(tmp_path):
    side = int(MAX_IMAGE_PIXELS**0.5) + 10
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    (tmp_path / "bomb.png").write_bytes(bomb + b"\x00" * 64)
    with pytest.raises(BadImage, match=f"declares {side:,} x {side:,} pixels"):
        read_image_bytes("bomb.png", tmp_path, "x.csv:2")
