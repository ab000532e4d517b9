"""TF Hub handles resolved offline, at config time and when a hub encoder loads its module.

- a local folder must hold a SavedModel (`saved_model.pb`);
- an `http(s)://` handle (or a `gs://` archive) must already be in the TF Hub
  cache, the folder `hub.resolve` would have downloaded it into
  (`$TFHUB_CACHE_DIR/<sha1 of the handle>`, the same cache-dir logic as hub's).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from tensorflow_hub import resolver

from keras_mtmm.errors import ConfigError

CACHE_ENV = "TFHUB_CACHE_DIR"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def hub_cache_dir() -> str:
    """The TF Hub cache folder: `$TFHUB_CACHE_DIR`, `--tfhub_cache_dir`, else `<tmp>/tfhub_modules` (hub's logic)."""
    return resolver.tfhub_cache_dir(use_temp=True)


def resolve_hub_handle(handle: str, where: str = "encoder.handle") -> str:
    """The local folder of a hub handle, found without any network access.

    Args:
        handle: a local SavedModel folder, or a URL handle already in the TF Hub cache.
        where: the config key named in errors.

    Returns:
        The folder holding the module's `saved_model.pb`.

    Raises:
        ConfigError: the handle is not a local SavedModel and not in the cache
            (the message names the handle and `TFHUB_CACHE_DIR`).
    """
    if not handle:
        raise ConfigError(where, "a hub encoder needs a handle", "set it to a SavedModel folder or a cached hub URL")
    if _URL.match(handle):
        return _cached_module(handle, where)
    folder = Path(handle).expanduser()
    if not folder.is_dir():
        raise ConfigError(
            where,
            f"hub handle '{handle}' is neither a local folder nor a URL handle "
            f"(looked for the folder {folder.resolve()}; {CACHE_ENV} is only searched for URL handles)",
            "point it at a TF Hub SavedModel folder (holding saved_model.pb)",
        )
    if not any((folder / name).is_file() for name in _SAVED_MODEL_FILES):
        raise ConfigError(
            where,
            f"hub handle '{handle}' is a folder without saved_model.pb",
            "point it at the SavedModel folder itself (the one holding saved_model.pb)",
        )
    return str(folder)


def _cached_module(handle: str, where: str) -> str:
    scheme = handle.split("://", 1)[0].lower()
    cache_dir = hub_cache_dir()
    if scheme in ("http", "https") or (scheme == "gs" and handle.endswith((".tar", ".tar.gz", ".tgz"))):
        # hub's compressed-module resolvers download into <cache>/<sha1(handle)>.
        module_dir = Path(cache_dir) / hashlib.sha1(handle.encode("utf8")).hexdigest()
        if any((module_dir / name).is_file() for name in _SAVED_MODEL_FILES):
            return str(module_dir)
        what = f"hub handle '{handle}' is not in the TF Hub cache (looked in {module_dir})"
    else:
        what = f"hub handle '{handle}' would be read over the network ({scheme}://)"
    setting = os.environ.get(CACHE_ENV)
    raise ConfigError(
        where,
        f"{what}; {CACHE_ENV} is {f'set to {setting}' if setting else f'unset, so the cache is {cache_dir}'}; "
        "keras_mtmm never downloads",
        f"fetch it once where there is network with the same {CACHE_ENV} "
        f"(python -c \"import tensorflow_hub as hub; hub.resolve('{handle}')\"), point {CACHE_ENV} at a cache "
        "holding it, or set the handle to a local SavedModel folder",
    )
