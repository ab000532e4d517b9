"""Tests for the registered Keras layers and loss: serialization round trips and known-answer values."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_mtmm.layers.encoders import (
    BagOfWordsTextEncoder,
    CategoricalEmbeddingEncoder,
    ConvImageEncoder,
    ConvTextEncoder,
    IdentityEncoder,
    NumericMLPEncoder,
)
from keras_mtmm.layers.encoders.layers import MLPBlock
from keras_mtmm.layers.fusion import ConcatFusion, LateFusion, WeightedSumFusion
from keras_mtmm.layers.heads import TaskHead
from keras_mtmm.layers.sharing.hard import HardSharing
from keras_mtmm.tasks import ScaledMeanSquaredError
from tests.support.layer_round_trip import check_round_trips


@pytest.fixture(autouse=True)
def _seeded():
    """Fixed initial weights, so that no test depends on a lucky draw (e.g. all-zero ReLU outputs)."""
    keras.utils.set_random_seed(0)


BATCH = 3


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _float(shape, seed=0):
    return _rng(seed).normal(size=(BATCH, *shape)).astype(np.float32)


def _ints(shape, high, seed=0):
    return _rng(seed).integers(0, high, size=(BATCH, *shape)).astype(np.int32)


def _probabilities(width, seed=0):
    values = _rng(seed).random(size=(BATCH, width)).astype(np.float32)
    return values / values.sum(axis=-1, keepdims=True)


# Each case: id -> (factory of a fresh layer, {input name: (per-example shape, dtype, data)}).
# Layers taking a list of inputs get them in the dict's order.
def _cases():
    return {
        "mlp_block": (
            lambda: MLPBlock(units=[5, 4], dropout=0.2, name="block"),
            {"x": ((6,), "float32", _float((6,)))},
        ),
        "conv_image": (
            lambda: ConvImageEncoder(filters=[3, 4], kernel_size=3, units=5, dropout=0.1, name="image_encoder"),
            {"image": ((8, 8, 3), "float32", _float((8, 8, 3)))},
        ),
        "conv_text": (
            lambda: ConvTextEncoder(
                vocabulary_size=11, embedding_dim=4, filters=[3, 5], kernel_size=2, units=6, name="text_encoder"
            ),
            {"tokens": ((7,), "int32", _ints((7,), 11))},
        ),
        "bag_text": (
            lambda: BagOfWordsTextEncoder(vocabulary_size=11, embedding_dim=4, units=6, name="bag_encoder"),
            {"tokens": ((7,), "int32", _ints((7,), 11))},
        ),
        "numeric_mlp": (
            lambda: NumericMLPEncoder(hidden_units=[5], units=4, dropout=0.1, name="numeric_encoder"),
            {"numbers": ((3,), "float32", _float((3,)))},
        ),
        "numeric_identity": (
            lambda: IdentityEncoder(name="identity_encoder"),
            {"numbers": ((3,), "float32", _float((3,)))},
        ),
        "categorical_embedding": (
            lambda: CategoricalEmbeddingEncoder(
                vocabulary_sizes=[4, 6], embedding_dim=3, hidden_units=[5], units=4, name="categorical_encoder"
            ),
            {"codes": ((2,), "int32", np.array([[0, 5], [3, 1], [2, 4]], dtype=np.int32))},
        ),
        "concat_fusion": (
            lambda: ConcatFusion(name="fusion"),
            {"a": ((3,), "float32", _float((3,), 1)), "b": ((2,), "float32", _float((2,), 2))},
        ),
        "weighted_learned": (
            lambda: WeightedSumFusion(num_modalities=2, units=4, name="fusion"),
            {"a": ((3,), "float32", _float((3,), 1)), "b": ((2,), "float32", _float((2,), 2))},
        ),
        "weighted_fixed": (
            lambda: WeightedSumFusion(num_modalities=2, units=4, modality_weights=[1, 3], name="fusion"),
            {"a": ((3,), "float32", _float((3,), 1)), "b": ((2,), "float32", _float((2,), 2))},
        ),
        "late_learned": (
            lambda: LateFusion(num_modalities=3, name="fusion"),
            {
                "a": ((4,), "float32", _probabilities(4, 1)),
                "b": ((4,), "float32", _probabilities(4, 2)),
                "c": ((4,), "float32", _probabilities(4, 3)),
            },
        ),
        "late_fixed": (
            lambda: LateFusion(num_modalities=2, modality_weights=[2.0, 0.5], name="fusion"),
            {"a": ((4,), "float32", _probabilities(4, 1)), "b": ((4,), "float32", _probabilities(4, 2))},
        ),
        "hard_sharing": (
            lambda: HardSharing(["shape", "price"], shared_units=[6], tower_units=[4, 3], dropout=0.1, name="sharing"),
            {"features": ((5,), "float32", _float((5,)))},
        ),
        "head_softmax": (
            lambda: TaskHead(units=3, activation="softmax", name="shape"),
            {"features": ((5,), "float32", _float((5,)))},
        ),
        "head_linear_scaled": (
            lambda: TaskHead(units=1, activation="linear", target_scale=2.5, target_offset=-7.0, name="price"),
            {"features": ((5,), "float32", _float((5,)))},
        ),
    }


CASES = _cases()


def _data(spec: dict) -> dict[str, np.ndarray]:
    return {name: data for name, (_, _, data) in spec.items()}


def _randomize_logits(layer) -> None:
    """Learned modality weights start at zero logits; move them so a lost weight would show."""
    logits = getattr(layer, "logits", None)
    if logits is not None:
        logits.assign(np.linspace(-0.7, 0.9, logits.shape[0]).astype(np.float32))


@pytest.mark.parametrize("case", list(CASES))
def test_config_and_keras_file_round_trips(case, tmp_path):
    factory, spec = CASES[case]
    check_round_trips(factory, _data(spec), tmp_path, randomize=_randomize_logits)


# ---------------------------------------------------------------------------
# ScaledMeanSquaredError (a loss, not a layer)


def test_scaled_mse_known_value():
    loss = ScaledMeanSquaredError(target_scale=2.0)
    y_true = np.array([[1.0, 3.0], [0.0, 0.0]], dtype=np.float32)
    y_pred = np.array([[5.0, 3.0], [2.0, -2.0]], dtype=np.float32)
    # per example: mean(((4/2)^2, 0)) = 2 and mean((1, 1)) = 1 -> batch mean 1.5
    assert float(loss(y_true, y_pred)) == pytest.approx(1.5)
    # mean_with_sample_weight: only the second example counts
    assert float(loss(y_true, y_pred, sample_weight=np.array([0.0, 1.0]))) == pytest.approx(1.0)


def test_scaled_mse_config_round_trip():
    loss = ScaledMeanSquaredError(target_scale=3.0, name="price_loss")
    restored = ScaledMeanSquaredError.from_config(loss.get_config())
    assert restored.get_config() == loss.get_config()
    y_true = _float((2,), 1)
    y_pred = _float((2,), 2)
    assert float(restored(y_true, y_pred)) == pytest.approx(float(loss(y_true, y_pred)), rel=1e-6)
    # the scale is really restored: the value is 1/9 of the plain MSE
    assert float(restored(y_true, y_pred)) == pytest.approx(float(np.mean((y_pred - y_true) ** 2)) / 9.0, rel=1e-5)


def test_scaled_mse_keras_file_round_trip(tmp_path):
    inputs = keras.Input(shape=(3,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(inputs))
    model.compile(optimizer="sgd", loss=ScaledMeanSquaredError(target_scale=4.0))
    x = _float((3,))
    y = _float((1,), 5)
    expected = model.evaluate(x, y, verbose=0)

    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)

    assert isinstance(loaded.loss, ScaledMeanSquaredError)
    assert loaded.loss.target_scale == 4.0
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-6)


def test_scaled_mse_rejects_non_positive_scale():
    with pytest.raises(ValueError, match="target_scale"):
        ScaledMeanSquaredError(target_scale=0.0)


# ---------------------------------------------------------------------------
# Values with a known answer


def test_late_fusion_fixed_weights_known_value():
    fusion = LateFusion(num_modalities=2, modality_weights=[1, 3])
    output = fusion([np.zeros((1, 1), np.float32), np.ones((1, 1), np.float32)])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(output), [[0.75]], atol=1e-7)
    np.testing.assert_allclose(fusion.current_weights(), [0.25, 0.75], atol=1e-7)


def test_late_fusion_of_probabilities_is_a_probability_vector():
    fusion = LateFusion(num_modalities=2)
    fusion.logits.assign([1.3, -0.4])
    a, b = _probabilities(4, 1), _probabilities(4, 2)
    output = keras.ops.convert_to_numpy(fusion([a, b]))
    w = np.exp([1.3, -0.4]) / np.exp([1.3, -0.4]).sum()
    np.testing.assert_allclose(output, w[0] * a + w[1] * b, atol=1e-6)
    np.testing.assert_allclose(output.sum(axis=-1), 1.0, atol=1e-6)


def test_weighted_fusion_fixed_one_hot_weights_equal_first_projection():
    fusion = WeightedSumFusion(num_modalities=2, units=4, modality_weights=[1, 0])
    a, b = _float((3,), 1), _float((2,), 2)
    output = keras.ops.convert_to_numpy(fusion([a, b]))
    first = keras.ops.convert_to_numpy(fusion.projections[0](a))
    np.testing.assert_allclose(output, first, atol=1e-6)
    # and the second modality really is ignored
    other = keras.ops.convert_to_numpy(fusion([a, b + 100.0]))
    np.testing.assert_allclose(other, output, atol=1e-6)


def test_weighted_fusion_learned_weights_start_uniform():
    fusion = WeightedSumFusion(num_modalities=3, units=2)
    np.testing.assert_allclose(fusion.current_weights(), [1 / 3] * 3, atol=1e-7)
    fusion.logits.assign([2.0, 0.0, -1.0])
    weights = fusion.current_weights()
    assert weights.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(weights, np.exp([2.0, 0.0, -1.0]) / np.exp([2.0, 0.0, -1.0]).sum(), atol=1e-6)


def test_weighted_fusion_is_weighted_sum_of_projections():
    fusion = WeightedSumFusion(num_modalities=2, units=3, modality_weights=[3, 1])
    a, b = _float((4,), 1), _float((2,), 2)
    output = keras.ops.convert_to_numpy(fusion([a, b]))
    pa = keras.ops.convert_to_numpy(fusion.projections[0](a))
    pb = keras.ops.convert_to_numpy(fusion.projections[1](b))
    np.testing.assert_allclose(output, 0.75 * pa + 0.25 * pb, atol=1e-6)


def test_concat_fusion_concatenates_in_order():
    a, b = _float((3,), 1), _float((2,), 2)
    output = keras.ops.convert_to_numpy(ConcatFusion()([a, b]))
    np.testing.assert_array_equal(output, np.concatenate([a, b], axis=-1))


def test_task_head_linear_scale_and_offset():
    head = TaskHead(units=1, activation="linear", target_scale=2, target_offset=10)
    x = _float((4,))
    output = keras.ops.convert_to_numpy(head(x))
    dense = keras.ops.convert_to_numpy(head.dense(x))
    np.testing.assert_allclose(output, dense * 2 + 10, atol=1e-5)


def test_task_head_softmax_rows_sum_to_one():
    head = TaskHead(units=4, activation="softmax")
    output = keras.ops.convert_to_numpy(head(_float((5,))))
    assert output.shape == (BATCH, 4)
    np.testing.assert_allclose(output.sum(axis=-1), 1.0, atol=1e-6)
    assert np.all(output > 0)


def test_mlp_block_without_units_is_identity():
    x = _float((4,))
    block = MLPBlock(units=[])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(block(x)), x)
    assert block.compute_output_shape((None, 4)) == (None, 4)


def test_bag_of_words_ignores_padding_and_order():
    encoder = BagOfWordsTextEncoder(vocabulary_size=10, embedding_dim=3, units=4)
    tokens = np.array([[5, 3, 0, 0], [3, 5, 0, 0], [0, 5, 0, 3]], dtype=np.int32)
    output = keras.ops.convert_to_numpy(encoder(tokens))
    np.testing.assert_allclose(output[1], output[0], atol=1e-6)
    np.testing.assert_allclose(output[2], output[0], atol=1e-6)
    # a repeated token changes the mean, so the count is per token, not per distinct token
    embeddings = keras.ops.convert_to_numpy(encoder.embedding.embeddings)
    mean = (embeddings[5] + embeddings[3]) / 2
    expected = keras.ops.convert_to_numpy(encoder.projection(mean[None]))
    np.testing.assert_allclose(output[:1], expected, atol=1e-6)


def test_hard_sharing_gives_one_output_per_task_with_declared_shape():
    sharing = HardSharing(["a", "b", "c"], shared_units=[6], tower_units=[3])
    outputs = sharing(_float((5,)))
    assert sorted(outputs) == ["a", "b", "c"]
    declared = sharing.compute_output_shape((BATCH, 5))
    for task, value in outputs.items():
        assert tuple(value.shape) == declared[task] == (BATCH, 3)
    # towers are separate layers: different weights give different outputs
    a = keras.ops.convert_to_numpy(outputs["a"])
    b = keras.ops.convert_to_numpy(outputs["b"])
    assert not np.allclose(a, b)


@pytest.mark.parametrize(
    ("layer_class", "overrides", "argument"),
    [
        (ConvImageEncoder, {"filters": [4], "units": 0}, "units"),
        (ConvTextEncoder, {"vocabulary_size": 1}, "vocabulary_size"),
        (BagOfWordsTextEncoder, {"vocabulary_size": 10, "units": -1}, "units"),
        (NumericMLPEncoder, {"units": 0}, "units"),
        (CategoricalEmbeddingEncoder, {"vocabulary_sizes": [3, 1]}, "vocabulary_sizes"),
    ],
)
def test_encoder_constructor_validation_names_the_argument(layer_class, overrides, argument):
    kwargs = {"vocabulary_size": 10} if layer_class in (ConvTextEncoder, BagOfWordsTextEncoder) else {}
    kwargs.update(overrides)
    with pytest.raises(ValueError, match=argument):
        layer_class(**kwargs)


def test_conv_image_encoder_rejects_empty_filters():
    with pytest.raises(ValueError, match="filters"):
        ConvImageEncoder(filters=[])


@pytest.mark.parametrize(
    ("factory", "argument"),
    [
        (lambda: MLPBlock(units=[4, -2]), "units"),
        (lambda: MLPBlock(units=[4], dropout=1.0), "dropout"),
        (lambda: TaskHead(units=-1, activation="softmax"), "units"),
        (lambda: TaskHead(units=2, activation="relu"), "activation"),
        (lambda: TaskHead(units=1, activation="linear", target_scale=0.0), "target_scale"),
        (lambda: TaskHead(units=1, activation="sigmoid", target_offset=1.0), "target_offset"),
        (lambda: WeightedSumFusion(num_modalities=2, units=0), "units"),
        (lambda: WeightedSumFusion(num_modalities=2, modality_weights=[1.0]), "modality_weights"),
        (lambda: LateFusion(num_modalities=3, modality_weights=[1.0, 2.0]), "modality_weights"),
        (lambda: LateFusion(num_modalities=2, modality_weights=[1.0, -1.0]), "modality_weights"),
        (lambda: LateFusion(num_modalities=2, modality_weights=[0.0, 0.0]), "modality_weights"),
        (lambda: LateFusion(num_modalities=0), "num_modalities"),
        (lambda: HardSharing(["a", "a"], shared_units=[4], tower_units=[2]), "task_names"),
        (lambda: HardSharing([], shared_units=[4], tower_units=[2]), "task_names"),
    ],
)
def test_constructor_validation_names_the_argument(factory, argument):
    with pytest.raises(ValueError, match=argument):
        factory()


def test_fusion_rejects_wrong_number_of_inputs():
    with pytest.raises(ValueError, match="expected 3 inputs, got 2"):
        LateFusion(num_modalities=3)([np.ones((1, 2), np.float32)] * 2)
