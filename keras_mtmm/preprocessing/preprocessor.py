"""The Preprocessor: raw modality values -> model tensors, and raw labels -> targets + masks.

One Keras layer, adapted once on the training split, then used twice: inside
`tf.data` (`dataset.map`) while training and evaluating, and inside the
export's serving function, so training and serving cannot drift apart. What
depends on the kind of input is its modality type (`keras_mtmm.preprocessing.modalities`:
image, text, numeric, categorical, one file each).

Beside the modality tensors, `transform` gives `modality_presence`, float32
[B, M] in modality order: 0 where an example's modality is missing (an empty
image or text string, an all-NaN (or non-finite) numeric row, an all-empty categorical row),
so that fusion can leave that modality out instead of reading its filler.

Labels are encoded by the task types (`keras_mtmm.tasks`), giving a target and a 0/1 mask per
task: in NumPy for in-memory tables, in TF for streamed batches (`keras_mtmm.preprocessing.labels`).

Saving: `save(folder)` / `load(folder)` write and read the state folder (`state.json` and the text
vocabularies), which a run folder keeps as `preprocessor/`. As a Keras layer the Preprocessor also
travels inside a `.keras` file: its config is the specs, its assets the same state folder
(`save_assets` / `load_assets`), so `keras.models.load_model("best.keras").preprocessor` is adapted.
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
from keras_mtmm.data.tables import modality_inputs
from keras_mtmm.errors import DataError
from keras_mtmm.preprocessing.labels import encode_labels_tf, encode_table_labels
from keras_mtmm.preprocessing.modalities import get_modality_type
from keras_mtmm.preprocessing.stats import adapt_labels
from keras_mtmm.registry import MODALITY_TYPES
from keras_mtmm.tasks import get_task_type
from keras_mtmm.tasks.base import class_table, task_settings

STATE_FILE = "state.json"
STATE_VERSION = 1


@keras.saving.register_keras_serializable(package="keras_mtmm")
class Preprocessor(keras.layers.Layer):
    """Turns raw modality values into model inputs, and raw labels into targets.

    Build it from a config (`Preprocessor.from_settings`), `adapt` it on the
    training table, `save` it into a folder; `load` gives an equal object.

    Args:
        modalities: per modality, a spec dict with `type`, `columns`,
            `image_size`, `max_tokens`, `sequence_length`, and for text
            `raw_text` (pass the strings through, for hub encoders; missing = False), `waveform`
            (audio as the waveform, for hub encoders; missing = False).
        tasks: per task, a spec dict with `type`, `label`, `classes` (None = infer).
        label_separator: joins the labels of a multilabel cell.

    Example:
        >>> preprocessor = Preprocessor.from_settings(config)
        >>> preprocessor.adapt(splits["train"], folder)
        >>> features = preprocessor.transform(raw_batch)  # inside tf.data or a tf.function
    """

    def __init__(self, modalities: dict[str, dict], tasks: dict[str, dict], label_separator: str = "|", **kwargs):
        kwargs.setdefault("name", "preprocessor")
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.modalities = {name: dict(spec) for name, spec in modalities.items()}
        self.tasks = {name: dict(spec) for name, spec in tasks.items()}
        self.label_separator = label_separator
        self.kinds = {name: get_modality_type(spec["type"]) for name, spec in self.modalities.items()}
        self.state: dict[str, Any] | None = None
        self.folder: Path | None = None
        # Held untracked: their state is the state folder (the assets), not Keras variables.
        self._preprocessing = _Untracked({})
        self.built = True

    @classmethod
    def from_settings(cls, config) -> Preprocessor:
        """An un-adapted Preprocessor for an `ExperimentConfig`."""
        modalities = {
            name: {
                **m.spec(),
                "raw_text": m.type == "text" and m.encoder.type == "hub",
                "waveform": m.type == "audio" and m.encoder.type == "hub",
            }
            for name, m in config.modalities.items()
        }
        tasks = {
            name: {
                "type": t.type,
                "label": t.label,
                "classes": None if t.classes is None else list(t.classes),
                **task_settings(config, t),
            }
            for name, t in config.tasks.items()
        }
        for spec in tasks.values():  # a token task's text keeps one token per word: no punctuation stripped
            if "modality" in spec:
                modalities[spec["modality"]]["standardize"] = spec["standardize"]
                if get_task_type(spec["type"]).reads_vocabulary:  # a masked language model's [mask] token
                    modalities[spec["modality"]]["mask_token"] = True
        return cls(modalities, tasks, config.data.label_separator)

    @classmethod
    def from_config(cls, config):
        """Keras deserialization (a dict of specs); an `ExperimentConfig` gets a TypeError naming `from_settings`."""
        if not isinstance(config, dict):
            raise TypeError(
                "Preprocessor.from_config takes a Keras layer config (a dict); for an ExperimentConfig call "
                "Preprocessor.from_settings(config)"
            )
        return super().from_config(config)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "modalities": self.modalities,
            "tasks": self.tasks,
            "label_separator": self.label_separator,
        }

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
        state: dict[str, Any] = {kind: {} for kind in MODALITY_TYPES.names()}
        for name, spec in self.modalities.items():
            learnt = self.kinds[name].adapt(name, spec, inputs[name], folder)
            if learnt is not None:
                state[spec["type"]][name] = learnt
        state["classes"], state["targets"] = adapt_labels(self.tasks, table, self.label_separator)
        for task, spec in self.tasks.items():  # a masked language model's classes: its text's token ids
            if get_task_type(spec["type"]).reads_vocabulary:
                modality = spec["modality"]
                state["classes"][task] = self.kinds[modality].token_names(state["text"][modality], folder)
        self.state = state
        self.folder = folder
        self._write_state()
        self._build_layers()

    def _state_files(self) -> list[str]:
        files = [STATE_FILE]
        for name in self.modalities:
            learnt = self._learnt(name)
            files += self.kinds[name].files(learnt) if learnt is not None else []
        return files

    def _learnt(self, name: str):
        return self.state.get(self.modalities[name]["type"], {}).get(name)

    def save(self, folder: str | Path) -> Path:
        """Copy the adapted state into `folder` (e.g. an export's assets.extra)."""
        self._require_adapted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for filename in self._state_files():
            if (self.folder / filename).resolve() != (folder / filename).resolve():
                shutil.copyfile(self.folder / filename, folder / filename)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Preprocessor:
        """Rebuild an adapted Preprocessor from a folder written by `adapt`/`save`."""
        saved = _read_state(Path(folder))
        preprocessor = cls(saved["modalities"], saved["tasks"], saved["label_separator"])
        preprocessor.state = saved["state"]
        preprocessor.folder = Path(folder)
        preprocessor._build_layers()
        return preprocessor

    def save_assets(self, dir_path) -> None:
        """Keras saving: the state folder goes into the `.keras` archive (an un-adapted one saves nothing)."""
        if self.adapted:
            self.save(dir_path)

    def load_assets(self, dir_path) -> None:
        """Keras loading: the state from the archive. The archive's folder is temporary, so the text
        vocabularies are read into memory (an export of this object inlines them)."""
        folder = Path(dir_path)
        if not (folder / STATE_FILE).is_file():
            return
        saved = _read_state(folder)
        self.tasks = {name: dict(spec) for name, spec in saved["tasks"].items()}
        self.state = saved["state"]
        self.folder = None
        # One token a line, split on "\n" only, as TF's TextFileInitializer reads the file.
        lines = {name: (folder / name).read_text(encoding="utf-8").split("\n") for name in self._state_files()[1:]}
        self._build_layers({name: tokens[:-1] if tokens[-1:] == [""] else tokens for name, tokens in lines.items()})

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

    def _build_layers(self, vocabularies: dict[str, list[str]] | None = None) -> None:
        """Create the Keras preprocessing layers of every modality type and build them eagerly.

        Building eagerly (not first inside a tf.data graph) keeps their constants exportable.
        """
        layers: dict[str, Any] = {}
        for name, spec in self.modalities.items():
            built = self.kinds[name].layers(name, spec, self._learnt(name), self.folder, vocabularies or {})
            if built is not None:
                layers[name] = built
        self._preprocessing.value = layers
        self._label_tables = _Untracked(
            {name: class_table(classes) for name, classes in self.state["classes"].items() if classes}
        )

    def preprocessing_layers(self, modality: str) -> list[keras.layers.Layer]:
        """A modality's Keras preprocessing layers (a text vectorizer, one lookup per categorical column, ...)."""
        return list(self._preprocessing.value.get(modality, []))

    def tracked_layers(self) -> list[keras.layers.Layer]:
        """The Keras layers whose state a SavedModel must carry."""
        return [layer for layers in self._preprocessing.value.values() for layer in layers]

    # ------------------------------------------------------------------ specs

    def vocabulary_sizes(self, modality: str) -> list[int]:
        """Token/category index counts per column (text: one; categorical: one per column)."""
        self._require_adapted()
        layers = self._preprocessing.value.get(modality)
        return self.kinds[modality].vocabulary_sizes(self.modalities[modality], layers)

    def model_input_specs(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Per modality, the (shape without batch, dtype) of the model input."""
        specs = {name: self.kinds[name].model_input(spec) for name, spec in self.modalities.items()}
        specs[PRESENCE_KEY] = ((len(self.modalities),), "float32")
        return specs

    def raw_input_signature(self) -> dict[str, tf.TensorSpec]:
        """Per modality, the raw serving input (the export contract in the README)."""
        return {name: self.kinds[name].raw_input(name, spec) for name, spec in self.modalities.items()}

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
        return {name: self.kinds[name].raw_from_columns(spec, columns) for name, spec in self.modalities.items()}

    def encode_labels_tf(self, columns: dict[str, tf.Tensor]) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        """`encode_labels` in TensorFlow, for streamed column batches (`keras_mtmm.preprocessing.labels`)."""
        self._require_adapted()
        tables = self._label_tables.value
        return encode_labels_tf(columns, self.tasks, self.state["classes"], tables, self.label_separator)

    def call(self, raw):
        return self.transform(raw)

    def transform(self, raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Batched raw inputs -> model inputs. Pure TF: runs in tf.data and in serving."""
        self._require_adapted()
        layers = self._preprocessing.value
        features = {
            name: self.kinds[name].transform(spec, layers.get(name), raw[name])
            for name, spec in self.modalities.items()
        }
        features[PRESENCE_KEY] = self.presence(raw)
        return features

    def presence(self, raw: dict[str, tf.Tensor]) -> tf.Tensor:
        """float32 [B, M], modality order: 1 where the example has the modality, 0 where it is missing."""
        present = [self.kinds[name].present(spec, raw[name]) for name, spec in self.modalities.items()]
        return tf.cast(tf.stack(present, axis=1), tf.float32)

    def encode_labels(self, table: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Raw label columns -> (targets, masks), one entry per task."""
        self._require_adapted()
        return encode_table_labels(table, self.tasks, self.state["classes"], self.label_separator)


class _Specs(dict):
    """Adapts spec dicts to the attribute access `modality_inputs` expects."""

    def __init__(self, specs: dict[str, dict]):
        super().__init__({name: _Spec(spec) for name, spec in specs.items()})


class _Spec:
    def __init__(self, spec: dict):
        self.type = spec["type"]
        self.columns = spec["columns"]


class _Untracked:
    """A plain holder: Keras does not look inside it (the state is saved as the layer's assets)."""

    def __init__(self, value):
        self.value = value


def _read_state(folder: Path) -> dict:
    try:
        saved = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except OSError:
        raise DataError(
            str(folder), f"no preprocessor state ({STATE_FILE}) here", "point at a run folder's preprocessor/"
        ) from None
    if saved.get("version") != STATE_VERSION:
        raise DataError(str(folder / STATE_FILE), f"unknown state version {saved.get('version')}", "re-run training")
    return saved
