"""The modality types (image, audio, text, numeric, categorical): one file each, registered in MODALITY_TYPES."""

from keras_mtmm.preprocessing.modalities import audio, categorical, image, numeric, text  # noqa: F401 (registers them)
from keras_mtmm.preprocessing.modalities.base import ModalityType, get_modality_type

__all__ = ["ModalityType", "get_modality_type"]
