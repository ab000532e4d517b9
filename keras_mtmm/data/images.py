"""Image files and image bytes as data cells: read, checked (size, declared pixels, decodable), or refused.

A CSV cell names an image file (relative to the CSV's folder); a Parquet cell
may also hold the encoded bytes themselves. Either way the bytes must be a
PNG, JPEG, GIF or BMP that TensorFlow's decoder (the one training and
serving use) reads, declaring at most `MAX_IMAGE_PIXELS` pixels.
"""

from __future__ import annotations

import stat
import struct
import zlib
from pathlib import Path

from keras_mtmm.errors import DataError

# Image files: the largest file read (`data.max_file_bytes`' default) and the most pixels decoded.
MAX_FILE_BYTES = 32 << 20
MAX_IMAGE_PIXELS = 40_000_000

# Leading bytes of the image formats tf.io.decode_image reads.
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
SKIP = "or set data.on_bad_record: skip"


class BadFile(DataError):
    """A file cell (an image, a WAV) names a file that cannot be read or decoded."""


class BadImage(BadFile):
    """An image cell names a file that cannot be read or decoded."""


def read_file_cell(cell: str, folder: Path, where: str, max_bytes: int, noun: str, error=BadFile):
    """(path, bytes) of the file a data cell names, relative to `folder`; (None, b"") for an empty cell.

        The file must be a regular file (not a FIFO or a device, which could block or never end) of at
        most `max_bytes` (`data.max_file_bytes`); `error` (a `BadFile`) says what is wrong with it (an
    `noun` file: "image", "audio").
    """
    if not cell:
        return None, b""
    path = Path(cell)
    if not path.is_absolute():
        path = folder / path
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise error(where, f"'{path}' is not a regular file", f"name an {noun} file, {SKIP}")
        if info.st_size > max_bytes:
            raise error(
                where,
                f"'{path}' has {info.st_size:,} bytes, over data.max_file_bytes ({max_bytes:,})",
                f"shrink the {noun} or raise data.max_file_bytes, {SKIP}",
            )
        return path, path.read_bytes()
    except OSError as failure:
        raise error(
            where,
            f"cannot read {noun} '{path}' ({failure.strerror})",
            f"fix the path (relative to the data file's folder), {SKIP}",
        ) from None


def read_image_bytes(cell: str, folder: Path, where: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """Read an image file named in a CSV cell; an empty cell is a missing image (b"").

    The file must be a regular file (not a FIFO or a device, which could block
    or never end) of at most `max_bytes` (`data.max_file_bytes`), and its
    header must declare at most `MAX_IMAGE_PIXELS` pixels before anything is
    decoded (a small file can declare a huge image).
    """
    image_path, content = read_file_cell(cell, folder, where, max_bytes, "image", BadImage)
    if image_path is None:
        return b""
    return check_image_bytes(content, where, f"'{image_path}'")


def check_image_bytes(content: bytes, where: str, what: str = "the image bytes") -> bytes:
    """`content` itself when it is an image TensorFlow decodes, of at most `MAX_IMAGE_PIXELS` pixels;
    a `BadImage` naming `what` (the file, or the cell's bytes) otherwise."""
    if not content.startswith(IMAGE_SIGNATURES):
        raise BadImage(where, f"{what} is not a readable PNG, JPEG, GIF or BMP image", f"replace it, {SKIP}")
    size = declared_size(content)
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise BadImage(
            where,
            f"{what} declares {size[0]:,} x {size[1]:,} pixels, over the limit of {MAX_IMAGE_PIXELS:,}",
            f"downscale the image, {SKIP}",
        )
    if not _decodes(content):
        raise BadImage(where, f"{what} is not a readable PNG, JPEG, GIF or BMP image", f"replace or remove it, {SKIP}")
    return content


def declared_size(content: bytes) -> tuple[int, int] | None:
    """(width, height) from an image's header, without decoding it; None where the header does not say."""
    try:
        if content.startswith(b"\x89PNG\r\n\x1a\n"):
            if content[12:16] != b"IHDR" or struct.unpack(">I", content[29:33])[0] != zlib.crc32(content[12:29]):
                return None  # not a well-formed header: the decoder check says the file is unreadable
            return struct.unpack(">II", content[16:24])
        if content.startswith((b"GIF87a", b"GIF89a")):
            return struct.unpack("<HH", content[6:10])
        if content.startswith(b"BM"):
            width, height = struct.unpack("<ii", content[18:26])
            return abs(width), abs(height)
        if content.startswith(b"\xff\xd8\xff"):
            import tensorflow as tf

            height, width, _ = (int(v) for v in tf.io.extract_jpeg_shape(content).numpy())
            return width, height
    except (struct.error, ValueError):
        return None
    except Exception:  # a JPEG whose header TensorFlow cannot read: the decoder check says so
        return None
    return None


def _decodes(content: bytes) -> bool:
    """Whether TensorFlow's image decoder (the one training and serving use) reads these bytes."""
    import tensorflow as tf

    try:
        tf.io.decode_image(content, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        return False
    return True
