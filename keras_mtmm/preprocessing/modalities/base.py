"""The modality type: everything the Preprocessor does that depends on what kind of input a modality is.

One registered class per modality type (`keras_mtmm.registry.MODALITY_TYPES`): what `adapt` learns
from the training values, the Keras preprocessing layers built from it, the raw serving input and
the model input it becomes, how a missing value looks and how it is detected. A modality's `spec`
is the Preprocessor's dict for it (`type`, `columns`, the type's own keys such as `image_size`, and
`raw_text`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_mtmm.cells import as_strings
from keras_mtmm.registry import MODALITY_TYPES


class ModalityType:
    """A modality type; subclasses are registered by name and hold no state of their own."""

    name = ""
    config_class = None  # the dataclass of its own keys, `modalities.<m>.<type>` (keras_mtmm.config.one_of)
    checks: tuple = ()  # the checks of those keys (keras_mtmm.config.bounds)
    default_encoder = ""  # the encoder type a modality of this type gets when its config names none
    single_column = False  # whether it reads exactly one column
    # How a data file's cell is read (keras_mtmm.data.columns): "text" (kept as it is), "number"
    # (float32, empty = NaN), or "file" (a path relative to the data file, or the bytes themselves,
    # read by `read_file` and checked by `check_bytes`).
    cells = "text"

    def read_file(self, cell: str, folder: Path, where: str, max_bytes: int) -> bytes:
        """The checked bytes of the file a cell names ("file" cells; "" gives b"")."""
        raise NotImplementedError

    def check_bytes(self, content: bytes, where: str, what: str) -> bytes:
        """`content` when the decoder training and serving use reads it; a `BadFile` otherwise ("file" cells)."""
        raise NotImplementedError

    def decodes(self, encoded: tf.Tensor) -> tf.Tensor:
        """A scalar computed from the decoded content of non-empty `encoded` bytes (fails on bad bytes), for
        skipping bad streamed records ("file" cells)."""
        raise NotImplementedError

    def adapt(self, name: str, spec: dict, values: np.ndarray, folder: Path):
        """What is learnt from the training values (JSON-able; files go into `folder`); None: nothing."""
        return None

    def files(self, learnt) -> list[str]:
        """The files in the state folder that `adapt` wrote (copied with the state)."""
        return []

    def layers(self, name: str, spec: dict, learnt, folder: Path | None, vocabularies: dict[str, list[str]]):
        """The Keras preprocessing layers, built eagerly (their constants must be exportable); None: none.
        `vocabularies` holds the files' lines when they are not read from `folder`."""
        return None

    def transform(self, spec: dict, layers, value: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def present(self, spec: dict, value: tf.Tensor) -> tf.Tensor:
        """bool [B]: whether each example has the modality."""
        raise NotImplementedError

    def model_input(self, spec: dict) -> tuple[tuple[int, ...], str]:
        """(shape without the batch, dtype) of the model input."""
        raise NotImplementedError

    def raw_input(self, name: str, spec: dict) -> tf.TensorSpec:
        """The raw serving input (the export contract)."""
        raise NotImplementedError

    def table_input(self, table: dict[str, np.ndarray], columns: list[str]) -> np.ndarray:
        """The raw serving input of a column table's rows: object [N] of bytes ("file" cells) or of str."""
        values = table[columns[0]]
        if self.cells == "file":
            return np.array([b"" if value is None else bytes(value) for value in values], dtype=object)
        return as_strings(values)

    def raw_from_columns(self, spec: dict, columns: dict[str, tf.Tensor]) -> tf.Tensor:
        """The raw input from streamed column batches (`{column: [B]}`, as TFRecords parse)."""
        return columns[spec["columns"][0]]

    def vocabulary_sizes(self, spec: dict, layers) -> list[int]:
        """Token or category index counts per column (none for inputs without a vocabulary)."""
        return []

    def missing(self, values: np.ndarray) -> np.ndarray:
        """An array shaped like raw `values` that marks the modality missing in every row."""
        return np.full(values.shape, "", dtype=object)


def get_modality_type(name: str, where: str | None = None) -> ModalityType:
    """The modality type registered as `name` (a `ConfigError` naming `where` if unknown)."""
    return MODALITY_TYPES.get(name, where)()
