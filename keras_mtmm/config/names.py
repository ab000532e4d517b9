"""The one naming rule for model, modality and task names (checked up front, before TF or the file system sees them)."""

from __future__ import annotations

import re

from keras_mtmm.config.schema import PRESENCE_KEY
from keras_mtmm.errors import ConfigError

# One rule for the names that become folders, URLs and TF names (scopes, layers, signatures, tensors):
# a model name is a folder under the export root and part of TF Serving's REST path; modality and task
# names are serving input / output keys, layer names (head_<task>) and signature names (predict_<task>).
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MEMBER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
RESERVED_NAMES = frozenset({PRESENCE_KEY})


def check_model_name(name, where: str = "name") -> str:
    """A model name: 1-64 of letters, digits, `_`, `.`, `-`, starting with a letter or digit (no `..`)."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(
            where,
            f"{name!r} is not a valid model name",
            "use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit, e.g. name: demo",
        )
    return name


def check_member_name(name, where: str) -> str:
    """A modality or task name: 1-64 of letters, digits and `_`, starting with a letter; not reserved."""
    if not isinstance(name, str) or not MEMBER_NAME.fullmatch(name):
        raise ConfigError(
            where,
            f"{name!r} is not a valid name",
            "use 1-64 letters, digits or '_', starting with a letter (it becomes a serving tensor name)",
        )
    if name in RESERVED_NAMES:
        raise ConfigError(where, f"{name!r} is reserved (the model's own input)", "pick another name")
    return name
