"""Writing a file so that no reader ever sees half of it: a staging file beside it, renamed into place.

`os.replace` is atomic on one file system, so a reader (the run report, a
resumed run, another process) finds either the old file or the whole new
one, never a truncated one, even when the writer is killed mid-write.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path`, replacing it only once the new file is complete."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        staging.write_text(text, encoding="utf-8")
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return path


def write_json(path: str | Path, value, compact: bool = False) -> Path:
    """Write `value` as JSON (indented, or `compact`: no spaces), replacing `path` only once complete."""
    text = json.dumps(value, separators=(",", ":")) if compact else json.dumps(value, indent=1)
    return write_text(path, text)
