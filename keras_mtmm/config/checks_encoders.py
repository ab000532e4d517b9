"""Validation of encoder options that need more than a type check: the image head, TF Hub handles."""

from __future__ import annotations

from keras_mtmm.config.choices import POOLINGS
from keras_mtmm.config.hub_handles import resolve_hub_handle
from keras_mtmm.errors import ConfigError, choice_hint


def validate_image_head(where: str, encoder) -> None:
    """cnn only: `pooling` one of the image encoder's heads, `grid` two positive ints."""
    if encoder.type != "cnn":
        for key, default in (("pooling", "grid"), ("grid", [4, 4])):
            if getattr(encoder, key) != default:
                raise ConfigError(
                    f"{where}.{key}", f"applies to encoder type cnn only, not '{encoder.type}'", f"remove {key}"
                )
        return
    if encoder.pooling not in POOLINGS:
        raise ConfigError(
            f"{where}.pooling", f"unknown pooling {encoder.pooling!r}", choice_hint(encoder.pooling, POOLINGS)
        )
    if len(encoder.grid) != 2 or min(encoder.grid) < 1:
        raise ConfigError(f"{where}.grid", f"expected [rows, columns] >= 1, got {encoder.grid}", "e.g. [4, 4]")


def validate_hub_options(where: str, encoder, check_files: bool = True) -> None:
    """hub encoders: a handle that resolves offline; the hub-only keys nowhere else."""
    hub_only = {"handle": None, "trainable": False, "signature": None, "output_key": None}
    if encoder.type != "hub":
        for key, default in hub_only.items():
            if getattr(encoder, key) != default:
                raise ConfigError(
                    f"{where}.{key}", f"applies to encoder type hub only, not '{encoder.type}'", f"remove {key}"
                )
        return
    if encoder.trainable and encoder.signature:
        raise ConfigError(
            f"{where}.trainable",
            "a hub module cannot be fine-tuned through a signature (as with hub.KerasLayer)",
            "use trainable: false, or remove signature to call the module's __call__",
        )
    if not check_files:
        return

    # Offline only: a local SavedModel folder, or a URL handle already in TFHUB_CACHE_DIR.
    resolve_hub_handle(encoder.handle, f"{where}.handle")
