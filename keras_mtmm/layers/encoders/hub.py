"""TF Hub modules as encoders: a local SavedModel folder or a cached handle, wrapped in a Keras 3 layer.

`hub.KerasLayer` cannot be used in a Keras 3 functional model (it is a
tf_keras layer; tensorflow/hub #903), so `HubEncoder` loads the module with
`hub.load` and adopts the module's own `tf.Variable`s as its weights, the way
`keras.layers.TFSMLayer` does: the Keras variables wrap the very variables the
module's functions read, so fine-tuning changes what the module computes, a
`.keras` checkpoint stores (and restores) them, and an export writes them.
The loaded module is an attribute of the layer, so an export also finds its
lookup tables and their asset files (e.g. a vocabulary) and copies them into
its own `assets/`: the export no longer needs the module's folder.

Handles are resolved offline, never downloaded (`keras_mtmm.config.hub_handles.resolve_hub_handle`):

- a local folder must hold a SavedModel (`saved_model.pb`);
- an `http(s)://` handle (or a `gs://` archive) must already be in the TF Hub
  cache, the folder `hub.resolve` would have downloaded it into
  (`$TFHUB_CACHE_DIR/<sha1 of the handle>`, the same cache-dir logic as hub's).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from keras_mtmm.config.hub_handles import resolve_hub_handle
from keras_mtmm.config.one_of import exclusive
from keras_mtmm.errors import ConfigError
from keras_mtmm.layers.encoders.layers import EncoderProjection
from keras_mtmm.registry import ENCODERS


@dataclass
class HubEncoderConfig:
    """`encoder.hub`: the module (`handle`), fine-tuning, and which signature / output to call (this type's only)."""

    handle: str | None = exclusive(None)
    trainable: bool = exclusive(False)
    signature: str | None = exclusive(None)
    output_key: str | None = exclusive(None)
    batched: bool = exclusive(True)


@ENCODERS.register("hub")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class HubEncoder(keras.layers.Layer):
    """A TF Hub module (TF2 SavedModel) as an encoder, then dropout and a linear projection + LayerNorm.

    Text modules take the raw strings, `tf.string [B]`; image modules take
    `float32 [B, H, W, 3]` in [0, 1] (TF Hub's image convention); audio modules
    take the waveform, `float32 [B, samples]` in [-1, 1], mono at the modality's
    `sample_rate` (YAMNet's convention, at 16 kHz). The module returns `[B, D]`,
    or one vector per frame `[B, frames, D]` (averaged over the frames); a dict
    or a tuple of outputs is read at `output_key` (a tuple's: its index, e.g.
    "1" for YAMNet's embeddings). With `batched=False` the module takes one
    example at a time (YAMNet takes one waveform `[samples]` and returns
    `[frames, D]`): it is mapped over the batch. The projection gives the
    encoder its configured width `units`.

    The module's variables become the layer's weights, trainable only with
    `fine_tune=True`; they are saved in `.keras` checkpoints (the checkpoint
    stores the handle, loading re-reads the module from it, then restores the
    fine-tuned values) and written into exports with the module's assets.

    Args:
        handle: a local SavedModel folder, or a URL handle already in the TF Hub
            cache (`TFHUB_CACHE_DIR`); nothing is downloaded.
        units: the width of the output feature vector.
        fine_tune: train the module's own variables too (else they are frozen).
        signature: call this signature of the module instead of its `__call__`
            (frozen only, as with `hub.KerasLayer`).
        output_key: the output to use when the module returns a dict (its key) or a tuple (its index).
        batched: whether the module takes a batch; False maps it over the examples.
        dropout: dropout rate before the output projection.

    Example:
        >>> encoder = HubEncoder(handle="/models/nnlm-en-dim50", units=32)
        >>> features = encoder(tf.constant(["a red ball", "a blue box"]))  # [2, 32]
    """

    modality_types = ("image", "text", "audio")

    config_class = HubEncoderConfig

    @classmethod
    def check_config(cls, options, encoder, context, where: str) -> None:
        """A handle that resolves offline (a local SavedModel folder, or a URL handle already in
        TFHUB_CACHE_DIR); no fine-tuning through a signature."""
        if options.trainable and options.signature:
            raise ConfigError(
                f"{where}.trainable",
                "a hub module cannot be fine-tuned through a signature (as with hub.KerasLayer)",
                "use trainable: false, or remove signature to call the module's __call__",
            )
        if context.check_files:
            resolve_hub_handle(options.handle, f"{where}.handle")

    @classmethod
    def from_settings(cls, encoder, vocabulary_sizes: list[int], return_sequence: bool, name: str):
        """The layer a modality's `encoder` block describes. (Keras' `from_config` is deserialization.)"""
        return cls(
            handle=encoder.get().handle,
            units=encoder.units,
            fine_tune=encoder.get().trainable,
            signature=encoder.get().signature,
            output_key=encoder.get().output_key,
            batched=encoder.get().batched,
            dropout=encoder.dropout,
            name=name,
        )

    def __init__(
        self,
        handle: str,
        units: int = 64,
        fine_tune: bool = False,
        signature: str | None = None,
        output_key: str | None = None,
        dropout: float = 0.0,
        batched: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if units < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"HubEncoder: units >= 1 and dropout in [0, 1) expected, got {units}, {dropout}")
        if fine_tune and signature:
            raise ConfigError(
                "encoder.trainable",
                f"hub module '{handle}' cannot be fine-tuned through its signature '{signature}'",
                "use trainable: false, or drop signature to call the module's __call__",
            )
        self.handle = handle
        self.units = units
        self.fine_tune = bool(fine_tune)
        self.signature = signature
        self.output_key = output_key
        self.dropout = dropout
        self.batched = bool(batched)
        import tensorflow_hub as hub

        # An attribute, so that exports track the module's tables and assets.
        self.module = hub.load(resolve_hub_handle(handle))
        self._function, self._input_name = self._module_function()
        function_type = getattr(self._function, "function_type", None)
        self._takes_training = (
            signature is None and function_type is not None and "training" in function_type.parameters
        )
        self.dropout_layer = keras.layers.Dropout(dropout)
        self.projection = EncoderProjection(units, name="projection")

    def _module_function(self):
        """(the function to call, its keyword input name for a signature, else None)."""
        if self.signature is None:
            if not callable(self.module):
                raise ConfigError(
                    "encoder.signature",
                    f"hub module '{self.handle}' is not callable",
                    f"name one of its signatures: {', '.join(self.module.signatures) or '(none)'}",
                )
            return self.module.__call__, None
        if self.signature not in self.module.signatures:
            raise ConfigError(
                "encoder.signature",
                f"hub module '{self.handle}' has no signature '{self.signature}'",
                f"choose one of: {', '.join(self.module.signatures) or '(none)'}",
            )
        function = self.module.signatures[self.signature]
        names = list(function.structured_input_signature[1])
        if len(names) != 1:
            raise ConfigError(
                "encoder.signature",
                f"signature '{self.signature}' of '{self.handle}' takes {len(names)} inputs ({', '.join(names)})",
                "use a signature with one input",
            )
        return function, names[0]

    def _module_variables(self) -> list[tuple[tf.Variable, bool]]:
        """The module's variables with their trainability, in a stable order (hub's API first, else captures)."""
        if isinstance(getattr(self.module, "variables", None), (list, tuple)):
            trainable = {id(v) for v in getattr(self.module, "trainable_variables", ())}
            return [(v, id(v) in trainable) for v in self.module.variables]
        functions = getattr(self._function, "concrete_functions", None) or [self._function]
        found, seen = [], set()
        for function in functions:
            for variable in function.variables:
                if id(variable) not in seen:
                    seen.add(id(variable))
                    found.append((variable, variable.trainable))
        return found

    def build(self, input_shape):
        # initializer=<tf.Variable> makes the Keras variable wrap it (no copy), as in keras.layers.TFSMLayer;
        # a list of variables assigned as an attribute is tracked as the layer's own weights.
        self.module_weights = [
            keras.Variable(
                initializer=variable,
                trainable=self.fine_tune and trainable,
                dtype=variable.dtype,
                shape=variable.shape,
                name=variable.name.split(":")[0].replace("/", "_"),
            )
            for variable, trainable in self._module_variables()
        ]
        self.projection.build((input_shape[0], self._module_width(input_shape)))

    def _module_width(self, input_shape) -> int:
        """The module's output width D, from a trace (nothing is computed)."""
        dtype = tf.string if len(input_shape) == 1 else tf.float32
        spec = tf.TensorSpec([None, *input_shape[1:]], dtype)
        if not self.batched:  # one example's features [D], which mapping over the batch stacks
            example = tf.TensorSpec(input_shape[1:], dtype)
            once = tf.function(lambda x: self._frames_mean(self._call_once(x, False), batch_axes=0), autograph=False)
            self._example_shape = once.get_concrete_function(example).structured_outputs.shape
        traced = tf.function(lambda x: self._call_module(x, False), autograph=False).get_concrete_function(spec)
        shape = traced.structured_outputs.shape
        if shape.rank != 2 or shape[-1] is None:
            raise ConfigError(
                "encoder.handle",
                f"hub module '{self.handle}' gives {shape} for a {dtype.name} input of shape {list(spec.shape)}; "
                "expected [batch, features]",
                "use an embedding/feature-vector module (or output_key to pick such an output)",
            )
        return int(shape[-1])

    def _call_module(self, inputs, training: bool):
        """The module's features `[B, D]`: called on the batch, or on each example (`batched=False`)."""
        if self.batched:
            return self._frames_mean(self._call_once(inputs, training), batch_axes=1)
        return tf.map_fn(
            lambda example: self._frames_mean(self._call_once(example, training), batch_axes=0),
            inputs,
            fn_output_signature=tf.TensorSpec(self._example_shape, self.compute_dtype),
        )

    def _frames_mean(self, outputs, batch_axes: int):
        """One vector per example: one per frame (a rank above `[batch_axes..., D]`) is averaged."""
        outputs = tf.cast(outputs, self.compute_dtype)
        return tf.reduce_mean(outputs, axis=batch_axes) if outputs.shape.rank == batch_axes + 2 else outputs

    def _call_once(self, inputs, training: bool):
        if self._input_name is not None:
            outputs = self._function(**{self._input_name: inputs})
        elif self._takes_training:
            outputs = self._function(inputs, training=training)
        else:
            outputs = self._function(inputs)
        if isinstance(outputs, (tuple, list)):
            index = self.output_key
            if index is None or not index.isdigit() or int(index) >= len(outputs):
                raise ConfigError(
                    "encoder.output_key",
                    f"hub module '{self.handle}' returns {len(outputs)} outputs, got output_key {self.output_key!r}",
                    f"set output_key to the index of the feature output (0 to {len(outputs) - 1})",
                )
            return outputs[int(index)]
        if isinstance(outputs, dict):
            key = self.output_key
            if key is None and len(outputs) == 1:
                key = next(iter(outputs))
            if key not in outputs:
                raise ConfigError(
                    "encoder.output_key",
                    f"hub module '{self.handle}' returns {sorted(outputs)}, got output_key {self.output_key!r}",
                    f"set output_key to one of: {', '.join(sorted(outputs))}",
                )
            return outputs[key]
        if self.output_key is not None:
            raise ConfigError(
                "encoder.output_key",
                f"hub module '{self.handle}' returns one tensor, not a dict",
                "remove output_key",
            )
        return outputs

    def call(self, inputs, training=None):
        features = self._call_module(inputs, bool(training) and self.fine_tune)
        return self.projection(self.dropout_layer(features, training=training))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "handle": self.handle,
            "units": self.units,
            "fine_tune": self.fine_tune,
            "signature": self.signature,
            "output_key": self.output_key,
            "dropout": self.dropout,
            "batched": self.batched,
        }
