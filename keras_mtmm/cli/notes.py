"""A report built after the work it shows: a missing matplotlib is a note, a failure a warning (the work is done)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def report_after(label: str, build: Callable[[Path], Path], folder: Path) -> None:
    """Print where `build(folder)` wrote the `label` ("run report", "tuning report"), or why it did not."""
    try:
        print(f"{label}: {build(folder)}")
    except ImportError as error:
        print(f"note: no {label} ({error})")
    except Exception as error:  # the folder is complete; `mtmm report` builds the report again
        print(f"warning: the {label} failed ({type(error).__name__}: {error}); retry: mtmm report {folder}")
