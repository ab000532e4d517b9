"""The layer round trip every layer test uses: its config and a `.keras` file, seeded, with equal outputs.

    loaded = check_round_trips(lambda: MMoE(["a", "b"], 3, [4], [3]), {"features": x}, tmp_path)

checks that
- `type(layer).from_config(layer.get_config())` has the same config (holding every constructor
  argument) and, given the layer's weights, computes the same outputs;
- the layer inside a functional model, saved as `.keras` and loaded with plain `keras.models.load_model`
  (no `custom_objects`), has the same type and config and computes the same outputs;
- the outputs are not all zero (a comparison of dead outputs would prove nothing).
"""

from __future__ import annotations

import inspect

import keras
import numpy as np


def randomize_weights(layer, seed: int = 1, scale: float = 0.7) -> None:
    """Every weight random, so that a weight lost in a round trip shows."""
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(scale=scale, size=w.shape).astype(w.dtype) for w in layer.get_weights()])


def call_on(layer, inputs: dict):
    """Call `layer` on named inputs: the one input, or the list of them in order."""
    values = list(inputs.values())
    return layer(values if len(values) > 1 else values[0])


def as_numpy(outputs):
    if isinstance(outputs, dict):
        return {key: as_numpy(value) for key, value in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return [as_numpy(value) for value in outputs]
    return np.asarray(keras.ops.convert_to_numpy(outputs))


def assert_close(got, expected, atol: float = 1e-6) -> None:
    if isinstance(expected, dict):
        assert sorted(got) == sorted(expected)
        for key in expected:
            assert_close(got[key], expected[key], atol)
    elif isinstance(expected, list):
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert_close(a, b, atol)
    else:
        np.testing.assert_allclose(got, expected, atol=atol)


def assert_not_trivial(outputs) -> None:
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    for value in outputs if isinstance(outputs, list) else [outputs]:
        assert np.abs(as_numpy(value)).sum() > 0, "all-zero outputs: the round trip would prove nothing"


def check_round_trips(factory, data: dict, tmp_path, call=call_on, randomize=randomize_weights, seed: int = 0):
    """Both round trips of the layer `factory()` on `data` (named NumPy inputs); returns the loaded layer."""
    keras.utils.set_random_seed(seed)
    inputs = {name: keras.Input(shape=v.shape[1:], dtype=v.dtype.name, name=name) for name, v in data.items()}
    layer = factory()
    model = keras.Model(inputs, call(layer, inputs))
    if randomize is not None:
        randomize(layer)
    expected = as_numpy(model(data, training=False))
    assert_not_trivial(expected)

    config = layer.get_config()
    arguments = [
        n for n, p in inspect.signature(type(layer).__init__).parameters.items() if p.kind == p.POSITIONAL_OR_KEYWORD
    ]
    assert set(arguments) - {"self"} <= set(config), "get_config returns every constructor argument"
    restored = type(layer).from_config(config)
    assert type(restored) is type(layer) and restored.get_config() == config
    call(restored, data)  # build
    restored.set_weights(layer.get_weights())
    assert_close(as_numpy(call(restored, data)), as_numpy(call(layer, data)))

    path = tmp_path / f"{layer.name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    loaded_layer = loaded.get_layer(layer.name)
    assert type(loaded_layer) is type(layer) and loaded_layer.get_config() == config
    for got, want in zip(loaded_layer.get_weights(), layer.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert_close(as_numpy(loaded(data, training=False)), expected)
    return loaded_layer
