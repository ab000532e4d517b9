"""The Preprocessor: raw modality values -> model tensors, and raw labels -> targets + masks.

One object, adapted once on the training split, then used twice: inside
`tf.data` (`dataset.map`) while training and evaluating, and inside the
export's serving function, so training and serving cannot drift apart.

Per modality type (raw input -> model input):

- image: encoded PNG/JPEG/GIF/BMP bytes `tf.string [B]` -> decoded RGB,
  resized to `image_size`, rescaled to [0, 1]: `float32 [B, H, W, 3]`.
  An empty string (missing image) gives an all-zero image.
- text: `tf.string [B]` -> `TextVectorization` token ids `int64 [B, L]`
  (0 = padding, 1 = out of vocabulary). The vocabulary is a text file
  (`vocabulary_<modality>.txt`), so exports carry it in `assets/`.
  With a `hub` encoder (`raw_text`) the strings pass through unchanged,
  `tf.string [B]`: TF Hub text modules tokenize for themselves.
- numeric: `float32 [B, k]` -> `Normalization` with the training mean and
  variance (NaN-aware); a missing value (NaN) becomes 0, the mean. A value
  that is not finite (±inf) reads as missing too when serving; in training
  data it is an error (`DataError`), as it would train a NaN model.
- categorical: `tf.string [B, k]` -> one `StringLookup` per column,
  `int64 [B, k]`: 0 = missing (""), 1 = out of vocabulary, then the vocabulary.

Beside the modality tensors, `transform` gives `modality_presence`, float32
[B, M] in modality order: 0 where an example's modality is missing (an empty
image or text string, an all-NaN (or non-finite) numeric row, an all-empty categorical row),
so that fusion can leave that modality out instead of reading its filler.

Labels are encoded in NumPy by the task types (`keras_mtmm.tasks`), giving a
target and a 0/1 mask per task.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_mtmm.config.schema import PRESENCE_KEY
from keras_mtmm.data.tables import label_column, modality_inputs
from keras_mtmm.errors import DataError, UnknownLabel, locate_label
from keras_mtmm.preprocessing.image_decoding import decode_images
from keras_mtmm.preprocessing.labels import encode_labels_tf
from keras_mtmm.preprocessing.stats import (
    adapt_labels,
    category_vocabulary,
    check_finite_training_values,
    numeric_statistics,
    text_vocabulary,
)
from keras_mtmm.tasks import get_task_type

STATE_FILE = "state.json"
STATE_VERSION = 1


class Preprocessor:
    """Turns raw modality values into model inputs, and raw labels into targets.

    Build it from a config (`Preprocessor.from_config`), `adapt` it on the
    training table, `save` it into a folder; `load` gives an equal object.

    Args:
        modalities: per modality, a spec dict with `type`, `columns`,
            `image_size`, `max_tokens`, `sequence_length`, and for text
            `raw_text` (pass the strings through, for hub encoders; missing = False).
        tasks: per task, a spec dict with `type`, `label`, `classes` (None = infer).
        label_separator: joins the labels of a multilabel cell.

    Example:
        >>> preprocessor = Preprocessor.from_config(config)
        >>> preprocessor.adapt(splits["train"], folder)
        >>> features = preprocessor.transform(raw_batch)  # inside tf.data or a tf.function
    """

    def __init__(self, modalities: dict[str, dict], tasks: dict[str, dict], label_separator: str = "|"):
        self.modalities = {name: dict(spec) for name, spec in modalities.items()}
        self.tasks = {name: dict(spec) for name, spec in tasks.items()}
        self.label_separator = label_separator
        self.state: dict[str, Any] | None = None
        self.folder: Path | None = None
        self._layers: dict[str, Any] = {}

    @classmethod
    def from_config(cls, config) -> Preprocessor:
        """An un-adapted Preprocessor for an `ExperimentConfig`."""
        modalities = {
            name: {
                "type": m.type,
                "columns": list(m.columns),
                "image_size": list(m.image_size),
                "max_tokens": m.max_tokens,
                "sequence_length": m.sequence_length,
                "raw_text": m.type == "text" and m.encoder.type == "hub",
            }
            for name, m in config.modalities.items()
        }
        tasks = {
            name: {"type": t.type, "label": t.label, "classes": None if t.classes is None else list(t.classes)}
            for name, t in config.tasks.items()
        }
        return cls(modalities, tasks, config.data.label_separator)

    # ------------------------------------------------------------------ adapt

    @property
    def adapted(self) -> bool:
        return self.state is not None

    def adapt(self, table: dict[str, np.ndarray], folder: str | Path) -> None:
        """Learn vocabularies, statistics and class names from the training table.

        The state (and the text vocabulary files) are written into `folder`,
        which must stay in place while this object is used.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        inputs = modality_inputs(table, _Specs(self.modalities))
        state: dict[str, Any] = {"text": {}, "numeric": {}, "categorical": {}, "classes": {}, "targets": {}}
        for name, spec in self.modalities.items():
            values = inputs[name]
            if spec["type"] == "text" and not spec.get("raw_text", False):
                vocabulary = text_vocabulary(values, spec["max_tokens"], spec["sequence_length"])
                (folder / f"vocabulary_{name}.txt").write_text(
                    "".join(f"{token}\n" for token in vocabulary), encoding="utf-8"
                )
                state["text"][name] = f"vocabulary_{name}.txt"
            elif spec["type"] == "numeric":
                check_finite_training_values(values, spec["columns"])
                state["numeric"][name] = numeric_statistics(values)
            elif spec["type"] == "categorical":
                state["categorical"][name] = [
                    category_vocabulary(values[:, i], spec["max_tokens"]) for i in range(values.shape[1])
                ]
        state["classes"], state["targets"] = adapt_labels(self.tasks, table, self.label_separator)
        self.state = state
        self.folder = folder
        self._write_state()
        self._build_layers()

    def save(self, folder: str | Path) -> Path:
        """Copy the adapted state into `folder` (e.g. an export's assets.extra)."""
        self._require_adapted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for filename in [STATE_FILE, *self.state["text"].values()]:
            if (self.folder / filename).resolve() != (folder / filename).resolve():
                shutil.copyfile(self.folder / filename, folder / filename)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Preprocessor:
        """Rebuild an adapted Preprocessor from a folder written by `adapt`/`save`."""
        folder = Path(folder)
        try:
            saved = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        except OSError:
            raise DataError(
                str(folder), f"no preprocessor state ({STATE_FILE}) here", "point at a run folder's preprocessor/"
            ) from None
        if saved.get("version") != STATE_VERSION:
            raise DataError(
                str(folder / STATE_FILE), f"unknown state version {saved.get('version')}", "re-run training"
            )
        preprocessor = cls(saved["modalities"], saved["tasks"], saved["label_separator"])
        preprocessor.state = saved["state"]
        preprocessor.folder = folder
        preprocessor._build_layers()
        return preprocessor

    def _write_state(self) -> None:
        payload = {
            "version": STATE_VERSION,
            "modalities": self.modalities,
            "tasks": self.tasks,
            "label_separator": self.label_separator,
            "state": self.state,
        }
        (self.folder / STATE_FILE).write_text(json.dumps(payload, indent=1), encoding="utf-8")

    def _require_adapted(self) -> None:
        if self.state is None:
            raise RuntimeError(
                "the Preprocessor is not adapted: call adapt(train_table, folder) or Preprocessor.load(folder)"
            )

    # ------------------------------------------------------------------ layers

    def _build_layers(self) -> None:
        """Create the Keras preprocessing layers and build them eagerly.

        Building eagerly (not first inside a tf.data graph) keeps their
        constants exportable.
        """
        layers: dict[str, Any] = {}
        for name, spec in self.modalities.items():
            if spec["type"] == "text" and not spec.get("raw_text", False):
                layer = keras.layers.TextVectorization(
                    max_tokens=spec["max_tokens"],
                    output_sequence_length=spec["sequence_length"],
                    vocabulary=str(self.folder / self.state["text"][name]),
                    name=f"{name}_vectorizer",
                )
                layer(tf.constant([""]))
            elif spec["type"] == "numeric":
                stats = self.state["numeric"][name]
                layer = keras.layers.Normalization(
                    mean=stats["mean"], variance=stats["variance"], name=f"{name}_normalizer"
                )
                layer.build((None, len(stats["mean"])))
            elif spec["type"] == "categorical":
                layer = [
                    keras.layers.StringLookup(
                        vocabulary=vocabulary, num_oov_indices=1, mask_token="", name=f"{name}_lookup_{i}"
                    )
                    for i, vocabulary in enumerate(self.state["categorical"][name])
                ]
                for lookup in layer:
                    lookup(tf.constant([""]))
            else:
                continue
            layers[name] = layer
        self._layers = layers
        self._label_tables = {
            name: tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(classes, tf.string), tf.range(len(classes), dtype=tf.int64)
                ),
                default_value=-1,
            )
            for name, classes in self.state["classes"].items()
            if classes
        }

    def tracked_layers(self) -> list[keras.layers.Layer]:
        """The Keras layers whose state a SavedModel must carry."""
        tracked = []
        for layer in self._layers.values():
            tracked.extend(layer if isinstance(layer, list) else [layer])
        return tracked

    # ------------------------------------------------------------------ specs

    def vocabulary_sizes(self, modality: str) -> list[int]:
        """Token/category index counts per column (text: one; categorical: one per column)."""
        self._require_adapted()
        layer = self._layers.get(modality)
        if self.modalities[modality]["type"] == "text":
            return [] if self.modalities[modality].get("raw_text", False) else [int(layer.vocabulary_size())]
        if self.modalities[modality]["type"] == "categorical":
            return [int(lookup.vocabulary_size()) for lookup in layer]
        return []

    def model_input_specs(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Per modality, the (shape without batch, dtype) of the model input."""
        specs = {}
        for name, spec in self.modalities.items():
            kind = spec["type"]
            if kind == "image":
                specs[name] = ((*spec["image_size"], 3), "float32")
            elif kind == "text" and spec.get("raw_text", False):
                specs[name] = ((), "string")
            elif kind == "text":
                specs[name] = ((spec["sequence_length"],), "int64")
            elif kind == "numeric":
                specs[name] = ((len(spec["columns"]),), "float32")
            else:
                specs[name] = ((len(spec["columns"]),), "int64")
        specs[PRESENCE_KEY] = ((len(self.modalities),), "float32")
        return specs

    def raw_input_signature(self) -> dict[str, tf.TensorSpec]:
        """Per modality, the raw serving input (the export contract in the README)."""
        signature = {}
        for name, spec in self.modalities.items():
            kind = spec["type"]
            if kind in ("image", "text"):
                signature[name] = tf.TensorSpec([None], tf.string, name=name)
            elif kind == "numeric":
                signature[name] = tf.TensorSpec([None, len(spec["columns"])], tf.float32, name=name)
            else:
                signature[name] = tf.TensorSpec([None, len(spec["columns"])], tf.string, name=name)
        return signature

    def classes(self, task: str) -> list[str]:
        self._require_adapted()
        return list(self.state["classes"][task])

    def target_statistics(self, task: str) -> tuple[float, float]:
        """(offset, scale) of a regression task's targets (their mean and std); (0, 1) otherwise."""
        self._require_adapted()
        stats = self.state["targets"].get(task)
        return (stats["mean"], stats["std"]) if stats else (0.0, 1.0)

    # ------------------------------------------------------------------ transform

    def raw_inputs(self, table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The raw serving inputs of a column table (one array per modality)."""
        return modality_inputs(table, _Specs(self.modalities))

    def raw_inputs_tf(self, columns: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """`raw_inputs` in TensorFlow, for streamed column batches (`{column: [B]}`, as TFRecords parse)."""
        inputs = {}
        for name, spec in self.modalities.items():
            kind = spec["type"]
            if kind in ("image", "text"):
                inputs[name] = columns[spec["columns"][0]]
            elif kind == "numeric":
                inputs[name] = tf.stack([tf.cast(columns[c], tf.float32) for c in spec["columns"]], axis=1)
            else:
                inputs[name] = tf.stack([tf.strings.strip(columns[c]) for c in spec["columns"]], axis=1)
        return inputs

    def encode_labels_tf(self, columns: dict[str, tf.Tensor]) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        """`encode_labels` in TensorFlow, for streamed column batches (`keras_mtmm.preprocessing.labels`)."""
        self._require_adapted()
        return encode_labels_tf(columns, self.tasks, self.state["classes"], self._label_tables, self.label_separator)

    def transform(self, raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Batched raw inputs -> model inputs. Pure TF: runs in tf.data and in serving."""
        self._require_adapted()
        features = {}
        for name, spec in self.modalities.items():
            kind = spec["type"]
            value = raw[name]
            if kind == "image":
                features[name] = decode_images(value, spec["image_size"])
            elif kind == "text":
                features[name] = value if spec.get("raw_text", False) else self._layers[name](value)
            elif kind == "numeric":
                value = tf.cast(value, tf.float32)
                normalized = self._layers[name](value)
                features[name] = tf.where(tf.math.is_finite(value), normalized, tf.zeros_like(normalized))
            else:
                value = tf.strings.strip(value)
                columns = [lookup(value[:, i]) for i, lookup in enumerate(self._layers[name])]
                features[name] = tf.stack(columns, axis=1)
        features[PRESENCE_KEY] = self.presence(raw)
        return features

    def presence(self, raw: dict[str, tf.Tensor]) -> tf.Tensor:
        """float32 [B, M], modality order: 1 where the example has the modality, 0 where it is missing."""
        present = []
        for name, spec in self.modalities.items():
            value = raw[name]
            if spec["type"] == "image":  # the decoder's own test: "" gives the zero image
                present.append(tf.strings.length(value) > 0)
            elif spec["type"] == "text":
                present.append(tf.strings.length(tf.strings.strip(value)) > 0)
            elif spec["type"] == "numeric":
                present.append(tf.reduce_any(tf.math.is_finite(tf.cast(value, tf.float32)), axis=1))
            else:
                present.append(tf.reduce_any(tf.strings.length(tf.strings.strip(value)) > 0, axis=1))
        return tf.cast(tf.stack(present, axis=1), tf.float32)

    def encode_labels(self, table: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Raw label columns -> (targets, masks), one entry per task."""
        self._require_adapted()
        targets, masks = {}, {}
        for name, spec in self.tasks.items():
            task_type = get_task_type(spec["type"])
            where = f"tasks.{name}.label (column '{spec['label']}')"
            column = label_column(table, spec["label"], spec["type"] == "regression")
            try:
                targets[name], masks[name] = task_type.encode(
                    column, self.state["classes"][name], where, self.label_separator
                )
            except UnknownLabel as error:
                raise locate_label(error, table, spec["label"], name) from None
        return targets, masks


class _Specs(dict):
    """Adapts spec dicts to the attribute access `modality_inputs` expects."""

    def __init__(self, specs: dict[str, dict]):
        super().__init__({name: _Spec(spec) for name, spec in specs.items()})


class _Spec:
    def __init__(self, spec: dict):
        self.type = spec["type"]
        self.columns = spec["columns"]
