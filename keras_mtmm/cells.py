"""Conversions of raw cell values shared by sources, preprocessing and task types."""

from __future__ import annotations

import math

import numpy as np


def as_strings(raw: np.ndarray) -> np.ndarray:
    """Raw values as an object array of stripped strings; missing values become "".

    Floats that are whole numbers print without a decimal point (1.0 -> "1"),
    so numeric label columns read like their CSV text.
    """
    values = np.asarray(raw)
    if values.dtype.kind == "f":
        return np.array(
            ["" if math.isnan(v) else (str(int(v)) if float(v).is_integer() else str(v)) for v in values.ravel()],
            dtype=object,
        ).reshape(values.shape)
    if values.dtype.kind in "iub":
        return np.array([str(int(v)) for v in values.ravel()], dtype=object).reshape(values.shape)
    return np.array([_one_string(v) for v in values.ravel()], dtype=object).reshape(values.shape)


def _one_string(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bytes):
        return value.decode().strip()
    return str(value).strip()
