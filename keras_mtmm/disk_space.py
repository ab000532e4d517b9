"""A full disk is a user error with one line, not a crash: checked before the big writes, caught in them.

The big writes are a run's training state (`backup/state-*`, `best.keras`)
and the export. Before each, the free space of the folder's file system
must cover what is about to be written (estimated from the model's
variables, twice over, plus a margin), so the common case never starts a
write it cannot finish. HDF5 writing a file itself (Keras' `.weights.h5`)
crashes the process (SIGSEGV) when a write fails half-way, so the training
state is a `.keras` archive (its HDF5 image is built in memory). A write
that hits a full disk anyway (another process filled it, a quota) is
turned into `DiskFull` wherever it surfaces: Python's `OSError` (ENOSPC,
EDQUOT, EFBIG), or TensorFlow's and h5py's errors that carry the system's
message.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
from pathlib import Path

from keras_mtmm.errors import UserError

MARGIN_BYTES = 16 * 2**20
NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
NO_SPACE_MESSAGES = ("no space left on device", "disk quota exceeded", "file too large")


class DiskFull(UserError, OSError):
    """The disk (or quota) under a folder cannot take what keras_mtmm has to write there."""


def mebibytes(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def model_bytes(model, optimizer: bool = True) -> int:
    """The bytes of the model's variables, and the optimizer's unless `optimizer=False`."""
    import numpy as np

    variables = list(model.variables)
    optimizer = getattr(model, "optimizer", None) if optimizer else None
    if optimizer is not None and getattr(optimizer, "built", False):
        variables += list(optimizer.variables)
    seen, total = set(), 0
    for variable in variables:
        if id(variable) in seen:
            continue
        seen.add(id(variable))
        total += int(np.prod(variable.shape)) * np.dtype(variable.dtype).itemsize
    return total


def free_bytes(folder: str | Path) -> int:
    """Free bytes on the file system that holds `folder` (or its nearest existing parent)."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def require_free_space(folder: str | Path, needed: int, what: str, fix: str) -> None:
    """DiskFull unless the file system of `folder` has `needed` bytes (+ a margin) free."""
    needed += MARGIN_BYTES
    free = free_bytes(folder)
    if free < needed:
        raise DiskFull(str(folder), f"{what} needs about {mebibytes(needed)}; the disk has {mebibytes(free)} free", fix)


def is_disk_full(error: BaseException) -> bool:
    if isinstance(error, DiskFull):
        return True
    if isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS:
        return True
    return any(message in str(error).lower() for message in NO_SPACE_MESSAGES)


@contextlib.contextmanager
def disk_full_errors(folder: str | Path, what: str, fix: str):
    """Turn an error that comes from a full disk into `DiskFull` naming `folder`; others pass through."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as error:
        if not is_disk_full(error):
            raise
        raise DiskFull(str(folder), f"no space left while writing {what}", fix) from None


def disk_full_line(error: BaseException) -> str | None:
    """The `where: what; fix` line for an error that came from a full disk (None for any other error)."""
    if isinstance(error, DiskFull):
        return str(error)
    if not is_disk_full(error):
        return None
    where = getattr(error, "filename", None) or "disk"
    detail = " ".join(str(getattr(error, "strerror", None) or error).split())[:200]
    return (
        f"{where}: no space left on the device ({detail}); free disk space there, or choose another"
        " --output-dir / --export-dir, and rerun (a training run resumes from its last complete state)"
    )
