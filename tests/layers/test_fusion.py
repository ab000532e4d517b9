"""Tests for the fusion layers: round trips, known answers, bad args, and every strategy end to end."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.data.tables import load_splits
from keras_mtmm.layers.fusion import (
    DEFAULT_RANK,
    AttentionFusion,
    ConcatFusion,
    CrossAttentionFusion,
    GatedFusion,
    IntermediateFusion,
    LateFusion,
    LowRankFusion,
    WeightedSumFusion,
    build_fusion,
)
from keras_mtmm.registry import FUSIONS
from tests.support.layer_round_trip import check_round_trips

BATCH = 5
WIDTHS = {"a": 3, "b": 2, "c": 4}


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)


def _features(names, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=(BATCH, WIDTHS[name])).astype(np.float32) for name in names}


def _randomize(layer, seed=1):
    """Every weight random (bias, rank weights and all), so that a weight lost in a round trip shows."""
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(scale=0.7, size=w.shape).astype(np.float32) for w in layer.get_weights()])


def _np(value):
    """NumPy of a tensor; a dict of tensors (per-task fusion) becomes their concatenation in key order."""
    if isinstance(value, dict):
        return np.concatenate([_np(value[key]) for key in sorted(value)], axis=-1)
    return np.asarray(keras.ops.convert_to_numpy(value))


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


CASES = {
    "gated_2": (lambda: GatedFusion(num_modalities=2, units=4, name="fusion"), ["a", "b"]),
    "gated_3": (lambda: GatedFusion(num_modalities=3, units=4, name="fusion"), ["a", "b", "c"]),
    "attention_2": (lambda: AttentionFusion(num_modalities=2, units=4, name="fusion"), ["a", "b"]),
    "attention_3": (lambda: AttentionFusion(num_modalities=3, units=4, name="fusion"), ["a", "b", "c"]),
    "low_rank_2": (lambda: LowRankFusion(num_modalities=2, units=4, rank=3, name="fusion"), ["a", "b"]),
    "low_rank_3": (lambda: LowRankFusion(num_modalities=3, units=4, rank=2, name="fusion"), ["a", "b", "c"]),
    "early_3": (lambda: ConcatFusion(name="fusion"), ["a", "b", "c"]),
    "weighted_3": (lambda: WeightedSumFusion(num_modalities=3, units=4, name="fusion"), ["a", "b", "c"]),
    "late_3": (lambda: LateFusion(num_modalities=3, name="fusion"), ["a", "a", "a"]),
    "intermediate_3": (lambda: IntermediateFusion(num_modalities=3, units=4, depth=2, name="fusion"), ["a", "b", "c"]),
    "attention_per_task": (
        lambda: AttentionFusion(num_modalities=3, units=4, task_names=["t1", "t2"], name="fusion"),
        ["a", "b", "c"],
    ),
    "cross_attention_3": (
        lambda: CrossAttentionFusion(num_modalities=3, units=4, num_heads=2, name="fusion"),
        ["a", "b", "c"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_config_and_keras_file_round_trips(case, tmp_path):
    factory, names = CASES[case]
    data = _features(names)
    inputs = {f"{name}_{i}": data[name] for i, name in enumerate(names)}  # late_3 reads one input three times
    check_round_trips(factory, inputs, tmp_path, call=lambda layer, x: layer(list(x.values())), randomize=_randomize)


# ---------------------------------------------------------------------------
# Known answers, computed in NumPy from the layer's own weights


@pytest.mark.parametrize("names", [["a", "b"], ["a", "b", "c"]])
def test_gated_fusion_known_answer(names):
    data = _features(names)
    xs = [data[n] for n in names]
    layer = GatedFusion(num_modalities=len(names), units=4)
    layer(xs)
    _randomize(layer)

    z = np.concatenate(xs, axis=-1) @ _np(layer.gate.kernel) + _np(layer.gate.bias)
    gates = _softmax(z)
    h = [np.tanh(x @ _np(p.kernel) + _np(p.bias)) for x, p in zip(xs, layer.projections)]
    expected = sum(gates[:, i : i + 1] * h[i] for i in range(len(names)))

    np.testing.assert_allclose(_np(layer.modality_weight_values(xs)), gates, atol=1e-5)
    np.testing.assert_allclose(_np(layer(xs)), expected, atol=1e-5)
    assert not hasattr(layer, "current_weights"), "gates are per example: nothing for inspection to report"
    if len(names) == 2:  # the paper's sigmoid form with a scalar gate
        g = 1 / (1 + np.exp(-(z[:, 0] - z[:, 1])))[:, None]
        np.testing.assert_allclose(_np(layer(xs)), g * h[0] + (1 - g) * h[1], atol=1e-5)


def test_gated_fusion_starts_with_equal_gates_over_the_present_modalities():
    names = ["a", "b", "c"]
    data = _features(names)
    xs = [data[n] for n in names]
    layer = GatedFusion(num_modalities=3, units=4)
    np.testing.assert_allclose(_np(layer.modality_weight_values(xs)), np.full((len(xs[0]), 3), 1 / 3), atol=1e-6)
    presence = np.ones((len(xs[0]), 3), np.float32)
    presence[:, 1] = 0.0  # b missing everywhere: the other two share the weight
    gates = _np(layer.modality_weight_values(xs, presence))
    np.testing.assert_allclose(gates, np.tile([0.5, 0.0, 0.5], (len(xs[0]), 1)), atol=1e-6)


@pytest.mark.parametrize("names", [["a", "b"], ["a", "b", "c"]])
def test_attention_fusion_known_answer(names):
    data = _features(names)
    xs = [data[n] for n in names]
    layer = AttentionFusion(num_modalities=len(names), units=4)
    layer(xs)
    _randomize(layer)

    p = [x @ _np(proj.kernel) + _np(proj.bias) for x, proj in zip(xs, layer.projections)]
    w_a, v = _np(layer.attention.kernel), _np(layer.score.kernel)[:, 0]
    scores = np.stack([np.tanh(p_i @ w_a) @ v for p_i in p], axis=1)
    weights = _softmax(scores)
    expected = sum(weights[:, i : i + 1] * p[i] for i in range(len(names)))

    got_weights = _np(layer.modality_weight_values(xs))
    assert got_weights.shape == (BATCH, len(names))
    np.testing.assert_allclose(got_weights.sum(axis=-1), np.ones(BATCH), atol=1e-6)
    assert (got_weights > 0).all()
    np.testing.assert_allclose(got_weights, weights, atol=1e-5)
    np.testing.assert_allclose(_np(layer(xs)), expected, atol=1e-5)
    assert not hasattr(layer, "current_weights")


def test_low_rank_fusion_rank_one_known_answer():
    data = _features(["a", "b"])
    x1, x2 = data["a"], data["b"]
    layer = LowRankFusion(num_modalities=2, units=4, rank=1)
    layer([x1, x2])
    _randomize(layer)

    ones = np.ones((BATCH, 1), np.float32)
    w1, w2 = _np(layer.factors[0])[0], _np(layer.factors[1])[0]
    assert w1.shape == (WIDTHS["a"] + 1, 4) and w2.shape == (WIDTHS["b"] + 1, 4)
    expected = (np.hstack([x1, ones]) @ w1) * (np.hstack([x2, ones]) @ w2) * _np(layer.rank_weights)[0] + _np(
        layer.bias
    )
    np.testing.assert_allclose(_np(layer([x1, x2])), expected, atol=1e-5)


def test_low_rank_fusion_general_rank_known_answer():
    names = ["a", "b", "c"]
    data = _features(names)
    xs = [data[n] for n in names]
    layer = LowRankFusion(num_modalities=3, units=4, rank=3)
    layer(xs)
    _randomize(layer)

    ones = np.ones((BATCH, 1), np.float32)
    expected = _np(layer.bias) + sum(
        _np(layer.rank_weights)[r]
        * np.prod([np.hstack([x, ones]) @ _np(f)[r] for x, f in zip(xs, layer.factors)], axis=0)
        for r in range(3)
    )
    np.testing.assert_allclose(_np(layer(xs)), expected, atol=1e-5)


# ---------------------------------------------------------------------------
# Bad arguments


@pytest.mark.parametrize(
    "factory, argument",
    [
        (lambda: GatedFusion(num_modalities=0, units=4), "num_modalities"),
        (lambda: GatedFusion(num_modalities=2, units=0), "units"),
        (lambda: AttentionFusion(num_modalities=0, units=4), "num_modalities"),
        (lambda: AttentionFusion(num_modalities=2, units=0), "units"),
        (lambda: LowRankFusion(num_modalities=0, units=4, rank=2), "num_modalities"),
        (lambda: LowRankFusion(num_modalities=2, units=0, rank=2), "units"),
        (lambda: LowRankFusion(num_modalities=2, units=4, rank=0), "rank"),
        (lambda: LowRankFusion(num_modalities=2, units=4, rank=-1), "rank"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(factory, argument):
    with pytest.raises(ValueError, match=argument):
        factory()


@pytest.mark.parametrize("layer_class", [GatedFusion, AttentionFusion, LowRankFusion])
def test_wrong_number_of_inputs_raises(layer_class):
    data = _features(["a", "b", "c"])
    layer = layer_class(num_modalities=2, units=4)
    with pytest.raises(ValueError, match="expected 2 inputs"):
        layer([data["a"], data["b"], data["c"]])


def test_registry_and_build_fusion():
    assert FUSIONS.get("gated") is GatedFusion
    assert FUSIONS.get("attention") is AttentionFusion
    assert FUSIONS.get("low_rank") is LowRankFusion
    for strategy in ("gated", "attention", "low_rank"):
        assert FUSIONS.get(strategy).is_decision_level is False
        layer = build_fusion(strategy, 3, "fusion", units=7)
        assert layer.name == "fusion" and layer.units == 7 and layer.num_modalities == 3
        with pytest.raises(TypeError, match="weights"):
            build_fusion(strategy, 2, "fusion", units=7, weights=[1.0, 2.0])  # not a key of theirs
    assert build_fusion("low_rank", 2, "fusion", units=5).rank == DEFAULT_RANK == 4
    assert build_fusion("weighted", 2, "fusion", weights=[1.0, 3.0]).get_config()["modality_weights"] == [1.0, 3.0]


# ---------------------------------------------------------------------------
# End to end: train, export, serve with plain TensorFlow


END_TO_END = {
    "early": [],
    "intermediate": ["fusion.strategy=intermediate", "fusion.depth=2"],
    "weighted": [],
    "late": [],
    "gated": [],
    "attention": [],
    "attention_per_task": ["fusion.strategy=attention", "fusion.per_task=true"],
    "low_rank": [],
    "cross_attention": ["fusion.strategy=cross_attention", "fusion.units=8"],
}


def test_every_registered_strategy_is_covered_end_to_end():
    assert set(FUSIONS.names()) <= set(END_TO_END)


# One case in the default run (task-conditioned attention; concatenation, the demo's `early`, trains and
# serves in the session's `tiny_run`; cross-attention's summaries are read in test_inspection.py); the rest
# behind `-m slow` (each trains and exports: 25-90 s), for a ~10-minute suite.
DEFAULT_END_TO_END = ("attention_per_task",)


@pytest.mark.parametrize(
    "case", [c if c in DEFAULT_END_TO_END else pytest.param(c, marks=pytest.mark.slow) for c in END_TO_END]
)
def test_train_checkpoint_and_serve_end_to_end(case, tiny_config_factory, tmp_path):
    """Train one step; the .keras checkpoint, the in-memory model and the export (plain TF) agree.

    Some test rows have modalities missing (empty image/text, NaN numerics),
    so the presence masks go through serving too.
    """
    from keras_mtmm.run_folder import load_checkpoint
    from keras_mtmm.training.run import train

    overrides = END_TO_END[case] or [f"fusion.strategy={case}"]
    config = tiny_config_factory(*overrides, "training.epochs=1", "training.steps_per_epoch=1")
    assert config.fusion.strategy == case.replace("_per_task", "")
    result = train(config, output_dir=tmp_path / "run", export_dir=tmp_path / "m", verbose=0)
    fusion_layers = [layer for layer in result.model.layers if layer.name.startswith("fusion")]
    assert len(fusion_layers) == (len(config.tasks) if case == "late" else 1)  # late: one per task
    for layer in fusion_layers:
        assert type(layer) is FUSIONS.get(config.fusion.strategy)
        if hasattr(layer, "current_weights"):
            assert layer.current_weights().sum() == pytest.approx(1.0, abs=1e-6)

    raw = result.preprocessor.raw_inputs(load_splits(config)["test"])
    raw["image"][:5] = b""
    raw["text"][3:8] = ""
    raw["numeric"][6:10] = np.nan
    features = result.preprocessor.transform(raw)
    expected = result.model.predict(features, verbose=0)
    checkpoint = load_checkpoint(result.run_dir / "best.keras").network.predict(features, verbose=0)
    serving = tf.saved_model.load(str(result.export_path)).signatures["serving_default"]
    served = serving(**{name: tf.constant(value) for name, value in raw.items()})
    assert sorted(served) == sorted(config.tasks)
    np.testing.assert_allclose(expected["shape"].sum(axis=-1), 1.0, atol=1e-5)  # still a distribution
    for task in config.tasks:
        assert np.isfinite(expected[task]).all()
        assert np.abs(expected[task]).sum() > 0
        np.testing.assert_allclose(checkpoint[task], expected[task], rtol=1e-5, atol=1e-5, err_msg=task)
        np.testing.assert_allclose(served[task].numpy(), expected[task], rtol=1e-5, atol=1e-5, err_msg=task)


def test_fusion_rank_from_the_config_reaches_the_layer(tiny_config_factory, tmp_path):
    from keras_mtmm.data.tables import load_splits
    from keras_mtmm.models.network import build_model
    from keras_mtmm.preprocessing.preprocessor import Preprocessor

    config = tiny_config_factory("fusion.strategy=low_rank", "fusion.rank=3", "fusion.units=8")
    preprocessor = Preprocessor.from_settings(config)
    preprocessor.adapt(load_splits(config)["train"], tmp_path / "pre")
    layer = build_model(config, preprocessor).get_layer("fusion")
    assert (layer.rank, layer.units) == (3, 8)
