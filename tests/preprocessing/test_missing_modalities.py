"""Missing modalities: presence from raw inputs, fusion that leaves them out, modality dropout, robustness table."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.layers.fusion import (
    AttentionFusion,
    ConcatFusion,
    CrossAttentionFusion,
    GatedFusion,
    IntermediateFusion,
    LateFusion,
    LowRankFusion,
    ModalityDropout,
    WeightedSumFusion,
)

BATCH = 6
WIDTHS = [3, 2, 4]


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)


def _np(value):
    if isinstance(value, dict):
        return {key: _np(item) for key, item in value.items()}
    return np.asarray(keras.ops.convert_to_numpy(value))


def _features(seed=0, widths=WIDTHS):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(BATCH, w)).astype(np.float32) for w in widths]


def _presence(missing: int, m: int = 3):
    presence = np.ones((BATCH, m), np.float32)
    presence[:, missing] = 0.0
    return presence


def _garbage(xs, index):
    """The same features with modality `index` replaced by large junk: a left-out modality must not matter."""
    junk = list(xs)
    junk[index] = np.full_like(xs[index], 1e4)
    return junk


def _randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(scale=0.7, size=w.shape).astype(np.float32) for w in layer.get_weights()])


# ---------------------------------------------------------------------------
# Presence from raw serving inputs


def test_presence_marks_empty_strings_all_nan_rows_and_empty_categories(tiny_run):
    preprocessor = tiny_run.preprocessor
    assert list(preprocessor.modalities) == ["image", "text", "numeric", "categorical"]
    image = tiny_run.preprocessor.raw_inputs(_table(tiny_run))["image"][0]
    raw = {
        "image": np.array([image, b"", image, image], dtype=object),
        "text": np.array(["red ball", "x", "   ", "a"], dtype=object),
        "numeric": np.array([[1, 2, 3], [np.nan, 2, np.nan], [1, 2, 3], [np.nan] * 3], dtype=np.float32),
        "categorical": np.array([["a", "b"], ["", "b"], ["", ""], [" ", "a"]], dtype=object),
    }
    presence = preprocessor.transform({k: tf.constant(v) for k, v in raw.items()})["modality_presence"].numpy()
    np.testing.assert_array_equal(
        presence,
        [
            [1, 1, 1, 1],
            [0, 1, 1, 1],  # no image; a partly-NaN numeric row is present
            [1, 0, 1, 0],  # whitespace text and all-empty categories are missing
            [1, 1, 0, 1],  # an all-NaN numeric row is missing
        ],
    )


def _table(run):
    import yaml

    from keras_mtmm.config.loading import config_from_dict
    from keras_mtmm.data.tables import load_splits

    config = config_from_dict(yaml.safe_load((run.run_dir / "config.yaml").read_text()))
    return {k: v[:8] for k, v in load_splits(config)["test"].items()}


# ---------------------------------------------------------------------------
# Each fusion layer with a modality missing equals that layer with the modality excluded


@pytest.mark.parametrize("missing", [0, 1, 2])
@pytest.mark.parametrize("fixed", [None, [1.0, 2.0, 5.0]])
def test_weighted_fusion_renormalises_over_present_modalities(missing, fixed):
    xs = _features()
    layer = WeightedSumFusion(3, units=4, modality_weights=fixed)
    layer(xs)
    _randomize(layer)
    got = _np(layer(_garbage(xs, missing), _presence(missing)))

    keep = [i for i in range(3) if i != missing]
    weights = _np(layer.weights_vector())[keep]
    reduced = WeightedSumFusion(2, units=4, modality_weights=list(weights))  # normalised to sum 1 inside
    reduced([xs[i] for i in keep])
    for target, source in zip(reduced.projections, [layer.projections[i] for i in keep]):
        target.set_weights(source.get_weights())
    np.testing.assert_allclose(got, _np(reduced([xs[i] for i in keep])), atol=1e-5)
    used = _np(layer.modality_weight_values(xs, _presence(missing)))
    np.testing.assert_allclose(used[:, missing], 0.0)
    np.testing.assert_allclose(used.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("missing", [0, 2])
def test_attention_fusion_equals_attention_over_the_present_modalities(missing):
    xs = _features()
    layer = AttentionFusion(3, units=4)
    layer(xs)
    _randomize(layer)
    keep = [i for i in range(3) if i != missing]
    reduced = AttentionFusion(2, units=4)
    reduced([xs[i] for i in keep])
    for target, i in zip(reduced.projections, keep):
        target.set_weights(layer.projections[i].get_weights())
    reduced.attention.set_weights(layer.attention.get_weights())
    reduced.score.set_weights(layer.score.get_weights())
    np.testing.assert_allclose(
        _np(layer(_garbage(xs, missing), _presence(missing))), _np(reduced([xs[i] for i in keep])), atol=1e-5
    )


def test_per_task_attention_weighs_modalities_differently_per_task_and_masks_each():
    xs = _features()
    layer = AttentionFusion(3, units=4, task_names=["a", "b"])
    layer(xs)
    _randomize(layer)
    weights = _np(layer.modality_weight_values(xs))
    assert set(weights) == {"a", "b"}
    assert np.abs(weights["a"] - weights["b"]).max() > 0.05  # one score vector per task
    masked = _np(layer.modality_weight_values(xs, _presence(1)))
    outputs = _np(layer(_garbage(xs, 1), _presence(1)))
    for task in ("a", "b"):
        np.testing.assert_allclose(masked[task][:, 1], 0.0)
        np.testing.assert_allclose(masked[task].sum(axis=1), 1.0, atol=1e-6)
        projected = [x @ _np(p.kernel) + _np(p.bias) for x, p in zip(xs, layer.projections)]
        expected = sum(masked[task][:, i : i + 1] * projected[i] for i in range(3))
        np.testing.assert_allclose(outputs[task], expected, atol=1e-4)


@pytest.mark.parametrize("missing", [0, 1])
def test_gated_fusion_gates_only_present_modalities(missing):
    xs = _features()
    layer = GatedFusion(3, units=4)
    layer(xs)
    _randomize(layer)
    zeroed = list(xs)
    zeroed[missing] = np.zeros_like(xs[missing])
    z = np.concatenate(zeroed, axis=-1) @ _np(layer.gate.kernel) + _np(layer.gate.bias)
    keep = [i for i in range(3) if i != missing]
    e = np.exp(z[:, keep] - z[:, keep].max(axis=1, keepdims=True))
    gates = e / e.sum(axis=1, keepdims=True)
    h = [np.tanh(x @ _np(p.kernel) + _np(p.bias)) for x, p in zip(xs, layer.projections)]
    expected = sum(gates[:, j : j + 1] * h[i] for j, i in enumerate(keep))
    np.testing.assert_allclose(_np(layer(_garbage(xs, missing), _presence(missing))), expected, atol=1e-5)


@pytest.mark.parametrize("missing", [0, 2])
def test_low_rank_fusion_drops_the_missing_factor_from_the_product(missing):
    xs = _features()
    layer = LowRankFusion(3, units=4, rank=3)
    layer(xs)
    _randomize(layer)
    keep = [i for i in range(3) if i != missing]
    reduced = LowRankFusion(2, units=4, rank=3)
    reduced([xs[i] for i in keep])
    reduced.set_weights([layer.get_weights()[i] for i in keep] + layer.get_weights()[3:])
    np.testing.assert_allclose(
        _np(layer(_garbage(xs, missing), _presence(missing))), _np(reduced([xs[i] for i in keep])), atol=1e-4
    )


@pytest.mark.parametrize("factory", [lambda: ConcatFusion(), lambda: IntermediateFusion(3, units=4, depth=2)])
def test_concatenating_fusions_zero_the_missing_slot_and_keep_the_others(factory):
    xs = _features()
    layer = factory()
    layer(xs)
    _randomize(layer)
    full = _np(layer(xs))
    got = _np(layer(_garbage(xs, 1), _presence(1)))
    widths = WIDTHS if isinstance(layer, ConcatFusion) else [4, 4, 4]
    edges = np.cumsum([0, *widths])
    np.testing.assert_allclose(got[:, edges[1] : edges[2]], 0.0)
    for i in (0, 2):
        np.testing.assert_allclose(got[:, edges[i] : edges[i + 1]], full[:, edges[i] : edges[i + 1]], atol=1e-6)


def test_late_fusion_averages_present_predictions_and_falls_back_when_none_is_present():
    predictions = [np.full((BATCH, 2), v, np.float32) for v in (0.1, 0.5, 0.9)]
    layer = LateFusion(3, modality_weights=[1.0, 1.0, 2.0])
    presence = _presence(2)
    presence[0] = 0.0  # nothing at all: the plain weighted average
    got = _np(layer(predictions, presence))
    np.testing.assert_allclose(got[1:], 0.3, atol=1e-6)  # (0.1 + 0.5) / 2
    np.testing.assert_allclose(got[0], (0.1 + 0.5 + 2 * 0.9) / 4, atol=1e-6)


def test_cross_attention_leaves_the_missing_modality_out_of_keys_and_output():
    rng = np.random.default_rng(3)
    xs = [
        rng.normal(size=(BATCH, 5, 3)).astype(np.float32),  # a token sequence
        rng.normal(size=(BATCH, 4, 2)).astype(np.float32),  # image patches
        rng.normal(size=(BATCH, 6)).astype(np.float32),  # a vector: one token
    ]
    masks = [np.ones((BATCH, 5), np.float32), np.ones((BATCH, 4), np.float32), np.ones((BATCH, 1), np.float32)]
    masks[0][:, 3:] = 0.0  # padding
    layer = CrossAttentionFusion(3, units=4, num_heads=2)
    layer(xs, None, token_masks=masks)
    _randomize(layer)
    got = _np(layer(_garbage(xs, 1), _presence(1), token_masks=masks))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got[:, 4:8], 0.0)

    # The same as the two-modality layer with the present modalities' weights.
    reduced = CrossAttentionFusion(2, units=4, num_heads=2)
    reduced([xs[0], xs[2]], None, token_masks=[masks[0], masks[2]])
    for j, i in enumerate((0, 2)):
        for group in ("projections", "attentions", "norms"):
            getattr(reduced, group)[j].set_weights(getattr(layer, group)[i].get_weights())
    expected = _np(reduced([xs[0], xs[2]], None, token_masks=[masks[0], masks[2]]))
    np.testing.assert_allclose(np.concatenate([got[:, :4], got[:, 8:]], axis=1), expected, atol=1e-4)

    # Padding tokens are never attended to: changing them changes nothing.
    padded = [xs[0].copy(), xs[1], xs[2]]
    padded[0][:, 3:] = 50.0
    np.testing.assert_allclose(
        _np(layer(padded, None, token_masks=masks)), _np(layer(xs, None, token_masks=masks)), atol=1e-4
    )


@pytest.mark.parametrize(
    "factory",
    [
        lambda: ConcatFusion(),
        lambda: IntermediateFusion(3, units=4),
        lambda: WeightedSumFusion(3, units=4),
        lambda: GatedFusion(3, units=4),
        lambda: AttentionFusion(3, units=4),
        lambda: LowRankFusion(3, units=4),
        lambda: CrossAttentionFusion(3, units=4),
    ],
)
def test_outputs_stay_finite_with_every_modality_missing(factory):
    xs = _features()
    layer = factory()
    out = _np(layer(xs, np.zeros((BATCH, 3), np.float32)))
    assert np.isfinite(out).all()


# ---------------------------------------------------------------------------
# Modality dropout


def test_modality_dropout_drops_at_the_configured_rates_and_never_everything():
    rows = 20000
    presence = np.ones((rows, 3), np.float32)
    presence[: rows // 4, 2] = 0.0  # already missing stays missing
    layer = ModalityDropout([0.3, 0.0, 0.5], seed=1)
    np.testing.assert_array_equal(_np(layer(presence, training=False)), presence)
    dropped = _np(layer(presence, training=True))
    assert dropped.sum(axis=1).min() >= 1
    np.testing.assert_array_equal(dropped[: rows // 4, 2], 0.0)
    assert (dropped[:, 1] == 1).all()
    # Modality 1 (rate 0) always stays, so the keep-everything fallback never fires here.
    assert abs((1 - dropped[:, 0]).mean() - 0.3) < 0.015
    assert abs((1 - dropped[rows // 4 :, 2]).mean() - 0.5) < 0.015


def test_modality_dropout_config_reaches_training(tiny_config_factory, tmp_path):
    from keras_mtmm.models.network import build_model
    from keras_mtmm.preprocessing.preprocessor import Preprocessor

    config = tiny_config_factory("fusion.modality_dropout={image: 0.25, numeric: 0.1}")
    preprocessor = Preprocessor.from_settings(config)
    from keras_mtmm.data.tables import load_splits

    preprocessor.adapt(load_splits(config)["train"], tmp_path / "pre")
    layer = build_model(config, preprocessor).get_layer("modality_dropout")
    assert layer.rates == [0.25, 0.0, 0.1, 0.0]


# ---------------------------------------------------------------------------
# Robustness table


def test_evaluate_robustness_table_through_the_cli(tiny_run, tmp_path, capsys):
    from keras_mtmm.cli.commands import main

    output = tmp_path / "metrics.json"
    assert main(["evaluate", "--model", str(tiny_run.export_path), "--robustness", "--output", str(output)]) == 0
    shown = capsys.readouterr().out
    assert "without_image" in shown and "missing-modality robustness" in shown
    report = json.loads(output.read_text())
    table = report["robustness"]
    assert list(table) == ["all", "without_image", "without_text", "without_numeric", "without_categorical"]
    for task, result in report["tasks"].items():
        assert table["all"][task] == pytest.approx(result)
        for condition in table.values():
            assert condition[task]["labelled"] == result["labelled"]
    # Removing the image changes the shape task's predictions (it is read from the image).
    assert table["without_image"]["shape"]["loss"] != pytest.approx(table["all"]["shape"]["loss"])


# ---------------------------------------------------------------------------
# Config errors


@pytest.mark.parametrize(
    "overrides, key, words",
    [
        (["fusion.per_task=true"], "fusion.per_task", "applies to fusion.strategy attention only"),
        (["fusion.modality_dropout={imag: 0.2}"], "fusion.modality_dropout.imag", "did you mean 'image'"),
        (["fusion.modality_dropout={image: 1.0}"], "fusion.modality_dropout.image", "[0, 1)"),
        (["fusion.strategy=cross_attention", "fusion.num_heads=9", "fusion.units=8"], "fusion.num_heads", "heads"),
        (["fusion.depth=0"], "fusion.depth", "positive"),
        (
            ["fusion.strategy=attention", "fusion.per_task=true", "weighting.strategy=mgda"],
            "weighting.strategy",
            "per-task attention",
        ),
    ],
)
def test_fusion_config_errors_name_the_key(tiny_config_factory, overrides, key, words):
    from keras_mtmm.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        tiny_config_factory(*overrides)
    assert error.value.where == key
    assert words in str(error.value)


def test_a_modality_may_not_take_the_presence_input_name():
    from keras_mtmm.config.loading import config_from_dict
    from keras_mtmm.errors import ConfigError

    raw = {
        "modalities": {"modality_presence": {"type": "numeric", "columns": ["a"]}},
        "tasks": {"t": {"type": "regression", "label": "y"}},
    }
    with pytest.raises(ConfigError, match="is reserved \\(the model's own input\\)"):
        config_from_dict(raw)


def test_modality_dropout_keeps_one_modality_when_all_would_go():
    presence = np.ones((4000, 2), np.float32)
    dropped = _np(ModalityDropout([0.9, 0.9], seed=2)(presence, training=True))
    assert dropped.sum(axis=1).min() >= 1
    # Both go with probability 0.81; then the row keeps both. So P(both kept) = 0.01 + 0.81.
    assert abs((dropped.sum(axis=1) == 2).mean() - 0.82) < 0.03
