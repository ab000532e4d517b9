"""Tests for the task types (keras_mtmm.tasks): NumPy metrics and losses against known answers and Keras."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_mtmm.errors import ConfigError, DataError, UnknownLabel
from keras_mtmm.tasks import get_task_type
from keras_mtmm.tasks.scores import f1, roc_auc

TASK_TYPES = ("binary", "multiclass", "multilabel", "regression")


# ---------------------------------------------------------------------------
# roc_auc and f1


@pytest.mark.parametrize(
    ("targets", "scores", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),  # perfect ranking
        ([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9], 0.0),  # reversed
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5),  # all tied
        # pairs (pos, neg): (0.5, 0.1)=1, (0.5, 0.5)=0.5, (0.9, 0.1)=1, (0.9, 0.5)=1 -> 3.5 / 4
        ([0, 1, 0, 1], [0.1, 0.5, 0.5, 0.9], 0.875),
        # pos {0.4, 0.2}, neg {0.3, 0.1, 0.4}: 0.4 beats 0.3, 0.1 and ties 0.4 (2.5); 0.2 beats 0.1 (1) -> 3.5 / 6
        ([1, 0, 0, 1, 0], [0.4, 0.3, 0.1, 0.2, 0.4], 3.5 / 6),
    ],
)
def test_roc_auc_known_values(targets, scores, expected):
    assert roc_auc(np.array(targets, dtype=np.float32), np.array(scores)) == pytest.approx(expected)


@pytest.mark.parametrize("targets", [[0, 0, 0], [1, 1, 1], []])
def test_roc_auc_is_none_when_a_class_is_absent(targets):
    assert roc_auc(np.array(targets, dtype=np.float32), np.linspace(0, 1, len(targets))) is None


def test_roc_auc_matches_keras_auc_on_random_data():
    rng = np.random.default_rng(7)
    targets = (rng.random(400) < 0.4).astype(np.float32)
    scores = np.clip(0.35 * targets + rng.random(400) * 0.65, 0, 1).astype(np.float32)
    metric = keras.metrics.AUC(num_thresholds=10000)
    metric.update_state(targets, scores)
    ours = roc_auc(targets, scores)
    assert 0.6 < ours < 0.99  # not a degenerate case
    assert ours == pytest.approx(float(metric.result()), abs=1e-3)


@pytest.mark.parametrize(
    ("truth", "predicted", "expected"),
    [
        ([1, 1, 0, 0], [1, 0, 1, 0], 0.5),  # tp=1, fp=1, fn=1 -> 2/(2+1+1)
        ([1, 1, 1, 0], [1, 1, 1, 0], 1.0),
        ([1, 0, 0, 0], [0, 1, 1, 0], 0.0),
        ([0, 0, 0], [0, 0, 0], 0.0),  # no positive at all
        ([1, 1, 1, 1, 0], [1, 0, 0, 0, 1], 2 / 6),  # tp=1, fn=3, fp=1
    ],
)
def test_f1_known_values(truth, predicted, expected):
    assert f1(np.array(truth, dtype=bool), np.array(predicted, dtype=bool)) == pytest.approx(expected)


# ---------------------------------------------------------------------------
# example_losses (NumPy) against the Keras loss


def _random_case(name: str, rng: np.random.Generator, n: int = 12, classes: int = 4):
    """Random (predictions, targets) shaped as the task's head and encoder produce them."""
    if name == "binary":
        return rng.random((n, 1)).astype(np.float32), (rng.random((n, 1)) < 0.5).astype(np.float32)
    if name == "multiclass":
        logits = rng.normal(size=(n, classes)) * 2
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
        return probabilities.astype(np.float32), rng.integers(0, classes, n).astype(np.int32)
    if name == "multilabel":
        return rng.random((n, classes)).astype(np.float32), (rng.random((n, classes)) < 0.4).astype(np.float32)
    return (rng.normal(size=(n, 1)) * 5 + 20).astype(np.float32), (rng.normal(size=(n, 1)) * 5 + 20).astype(np.float32)


@pytest.mark.parametrize("name", TASK_TYPES)
def test_example_losses_mean_equals_keras_loss(name):
    task = get_task_type(name)
    predictions, targets = _random_case(name, np.random.default_rng(1))
    ours = task.example_losses(predictions, targets)
    assert ours.shape == (len(predictions),)
    keras_value = float(task.loss()(targets, predictions))
    assert keras_value == pytest.approx(float(np.mean(ours)), rel=1e-5)


@pytest.mark.parametrize("name", TASK_TYPES)
def test_example_losses_per_example_equal_keras(name):
    task = get_task_type(name)
    predictions, targets = _random_case(name, np.random.default_rng(2), n=5)
    ours = task.example_losses(predictions, targets)
    loss = task.loss()
    for row in range(len(predictions)):
        one = float(loss(targets[row : row + 1], predictions[row : row + 1]))
        assert one == pytest.approx(ours[row], rel=1e-5)


@pytest.mark.parametrize("name", TASK_TYPES)
def test_masked_keras_loss_is_mean_over_labelled_rows_only(name):
    task = get_task_type(name)
    predictions, targets = _random_case(name, np.random.default_rng(3))
    mask = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1], dtype=np.float32)
    ours = task.example_losses(predictions, targets)
    keras_value = float(task.loss()(targets, predictions, sample_weight=mask))
    assert keras_value == pytest.approx(float(np.mean(ours[mask > 0])), rel=1e-5)
    # the masked-out rows matter to the unmasked mean, so the mask really changed the value
    assert float(np.mean(ours[mask > 0])) != pytest.approx(float(np.mean(ours)), rel=1e-3)


def test_regression_loss_with_target_scale_is_mse_over_scale_squared():
    task = get_task_type("regression")
    predictions, targets = _random_case("regression", np.random.default_rng(4))
    mse = float(np.mean((predictions.astype(np.float64) - targets) ** 2))
    assert float(np.mean(task.example_losses(predictions, targets, target_scale=3.0))) == pytest.approx(
        mse / 9, rel=1e-6
    )
    assert float(task.loss(target_scale=3.0)(targets, predictions)) == pytest.approx(mse / 9, rel=1e-5)


def test_cross_entropy_losses_known_values():
    # -log(0.8) for a correct 0.8 and -log(0.25) for a true class given 0.25
    binary = get_task_type("binary").example_losses(np.array([[0.8], [0.8]]), np.array([[1.0], [0.0]]))
    np.testing.assert_allclose(binary, [-np.log(0.8), -np.log(0.2)], rtol=1e-6)
    multiclass = get_task_type("multiclass").example_losses(np.array([[0.25, 0.75], [0.5, 0.5]]), np.array([0, 1]))
    np.testing.assert_allclose(multiclass, [-np.log(0.25), -np.log(0.5)], rtol=1e-6)


def test_multiclass_example_losses_clip_zero_probability_like_keras():
    task = get_task_type("multiclass")
    predictions = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
    targets = np.array([1], dtype=np.int32)
    ours = task.example_losses(predictions, targets)
    assert np.isfinite(ours).all()
    assert float(task.loss()(targets, predictions)) == pytest.approx(float(ours[0]), rel=1e-5)


def test_binary_example_losses_saturated_prediction_like_keras():
    task = get_task_type("binary")
    predictions = np.array([[1.0]], dtype=np.float32)
    targets = np.array([[0.0]], dtype=np.float32)
    ours = task.example_losses(predictions, targets)
    assert float(task.loss()(targets, predictions)) == pytest.approx(float(ours[0]), rel=1e-4)


# ---------------------------------------------------------------------------
# encode


@pytest.mark.parametrize("name", ["binary", "multiclass", "multilabel"])
def test_encode_missing_labels_keep_the_row_with_mask_zero(name):
    task = get_task_type(name)
    raw = np.array(["b", "", None, "a", "  "], dtype=object)
    targets, mask = task.encode(raw, ["a", "b"], "tasks.t.label", "|")
    assert len(targets) == len(mask) == 5
    np.testing.assert_array_equal(mask, [1, 0, 0, 1, 0])
    if name == "binary":
        np.testing.assert_array_equal(targets[:, 0][mask > 0], [1.0, 0.0])
    elif name == "multiclass":
        np.testing.assert_array_equal(targets[mask > 0], [1, 0])
    else:
        np.testing.assert_array_equal(targets[mask > 0], [[0, 1], [1, 0]])


def test_encode_nan_in_float_labels_is_missing():
    targets, mask = get_task_type("multiclass").encode(np.array([1.0, np.nan, 2.0]), ["1", "2"], "w", "|")
    np.testing.assert_array_equal(mask, [1, 0, 1])
    np.testing.assert_array_equal(targets[mask > 0], [0, 1])


def test_encode_nan_in_object_labels_is_missing():
    targets, mask = get_task_type("multiclass").encode(np.array(["a", np.nan], dtype=object), ["a", "b"], "w", "|")
    np.testing.assert_array_equal(mask, [1, 0])


@pytest.mark.parametrize("name", ["binary", "multiclass", "multilabel"])
def test_encode_unknown_class_raises_naming_where_and_value(name):
    task = get_task_type(name)
    with pytest.raises(DataError) as error:
        task.encode(np.array(["a", "zebra"], dtype=object), ["a", "b"], "tasks.kind.label", "|")
    message = str(error.value)
    assert error.value.where == "tasks.kind.label"
    assert message.startswith("tasks.kind.label:")
    assert "'zebra'" in message
    assert "row 1" in message


def test_binary_encode_second_class_is_positive():
    targets, mask = get_task_type("binary").encode(
        np.array(["yes", "no", "yes"], dtype=object), ["no", "yes"], "w", "|"
    )
    np.testing.assert_array_equal(targets, [[1.0], [0.0], [1.0]])
    assert targets.shape == (3, 1)
    np.testing.assert_array_equal(mask, [1, 1, 1])


def test_binary_encode_with_three_classes_raises():
    with pytest.raises(DataError, match="exactly 2 classes") as error:
        get_task_type("binary").encode(np.array(["a"], dtype=object), ["a", "b", "c"], "tasks.flag.label", "|")
    assert error.value.where == "tasks.flag.label"


def test_multiclass_encode_with_one_class_raises():
    with pytest.raises(DataError, match="at least 2 classes"):
        get_task_type("multiclass").encode(np.array(["a"], dtype=object), ["a"], "tasks.kind.label", "|")


def test_multilabel_encode_is_multi_hot():
    raw = np.array(["a|b", "c", "b | c", "", "a|a"], dtype=object)
    targets, mask = get_task_type("multilabel").encode(raw, ["a", "b", "c"], "w", "|")
    np.testing.assert_array_equal(targets, [[1, 1, 0], [0, 0, 1], [0, 1, 1], [0, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(mask, [1, 1, 1, 0, 1])


def test_multilabel_infer_classes_splits_and_sorts():
    raw = np.array(["b|a", "", "c | a", None], dtype=object)
    assert get_task_type("multilabel").infer_classes(raw, "|") == ["a", "b", "c"]


def test_infer_classes_skips_missing_and_sorts():
    raw = np.array(["dog", "", "cat", None, "dog"], dtype=object)
    assert get_task_type("multiclass").infer_classes(raw, "|") == ["cat", "dog"]
    assert get_task_type("regression").infer_classes(np.array([1.0, 2.0]), "|") == []


def test_regression_encode_missing_values_and_numbers():
    raw = np.array(["1.5", "", None, np.nan, "-2"], dtype=object)
    targets, mask = get_task_type("regression").encode(raw, [], "tasks.price.label", "|")
    assert targets.shape == (5, 1)
    np.testing.assert_array_equal(mask, [1, 0, 0, 0, 1])
    np.testing.assert_allclose(targets[:, 0], [1.5, 0, 0, 0, -2])


def test_regression_encode_non_number_raises_naming_row():
    with pytest.raises(DataError) as error:
        get_task_type("regression").encode(np.array(["1", "2", "cheap"], dtype=object), [], "tasks.price.label", "|")
    message = str(error.value)
    assert message.startswith("tasks.price.label:")
    assert "'cheap'" in message
    assert "row 2" in message


# ---------------------------------------------------------------------------
# score


def test_multiclass_score_accuracy_and_top_k():
    predictions = np.array(
        [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]],
        dtype=np.float32,
    )
    targets = np.array([0, 2, 2, 2])
    # argmax: 0, 1, 2, 0 -> 2/4 right; top-2: {0,1}, {1,2}, {2,1}, {0,1} -> rows 0, 1, 2 -> 3/4
    scores = get_task_type("multiclass").score(predictions, targets, ["accuracy", "top_k"], top_k=2)
    assert scores == {"accuracy": pytest.approx(0.5), "top_k": pytest.approx(0.75)}
    # top_k larger than the class count is every class: always right
    assert get_task_type("multiclass").score(predictions, targets, ["top_k"], top_k=5)["top_k"] == 1.0


def test_binary_score_accuracy_and_auc():
    predictions = np.array([[0.9], [0.4], [0.6], [0.2]], dtype=np.float32)
    targets = np.array([[1.0], [1.0], [0.0], [0.0]], dtype=np.float32)
    # predicted 1, 0, 1, 0 -> 2/4 right; pairs (0.9>0.6, 0.9>0.2, 0.4<0.6, 0.4>0.2) -> 3/4
    scores = get_task_type("binary").score(predictions, targets, ["accuracy", "auc"], top_k=1)
    assert scores == {"accuracy": pytest.approx(0.5), "auc": pytest.approx(0.75)}


def test_binary_score_auc_is_none_with_one_class():
    scores = get_task_type("binary").score(np.array([[0.2], [0.7]]), np.array([[1.0], [1.0]]), ["auc"], top_k=1)
    assert scores["auc"] is None


def test_regression_score_mae_and_rmse():
    predictions = np.array([[1.0], [2.0], [7.0]], dtype=np.float32)
    targets = np.array([[2.0], [2.0], [3.0]], dtype=np.float32)
    # errors -1, 0, 4: mae 5/3, rmse sqrt(17/3)
    scores = get_task_type("regression").score(predictions, targets, ["mae", "rmse"], top_k=1)
    assert scores["mae"] == pytest.approx(5 / 3)
    assert scores["rmse"] == pytest.approx(np.sqrt(17 / 3))


def test_multilabel_score_f1_micro_macro_and_auc():
    predictions = np.array([[0.9, 0.8], [0.7, 0.1], [0.2, 0.6], [0.1, 0.3]], dtype=np.float32)
    targets = np.array([[1, 1], [0, 0], [1, 1], [0, 0]], dtype=np.float32)
    # class 0: predicted [1,1,0,0] vs truth [1,0,1,0] -> tp 1, fp 1, fn 1 -> f1 0.5
    # class 1: predicted [1,0,1,0] vs truth [1,0,1,0] -> f1 1.0
    # micro: tp 3, predicted 4, true 4 -> 6/8
    # auc class 0: pos {0.9, 0.2} neg {0.7, 0.1} -> 0.9 beats both, 0.2 beats 0.1 -> 3/4; class 1: 1.0
    scores = get_task_type("multilabel").score(predictions, targets, ["f1_micro", "f1_macro", "auc"], top_k=1)
    assert scores["f1_micro"] == pytest.approx(0.75)
    assert scores["f1_macro"] == pytest.approx(0.75)
    assert scores["auc"] == pytest.approx(0.875)


def test_multilabel_auc_skips_classes_without_both_labels():
    predictions = np.array([[0.9, 0.8], [0.2, 0.1]], dtype=np.float32)
    targets = np.array([[1, 1], [0, 1]], dtype=np.float32)  # class 1 has no negative
    scores = get_task_type("multilabel").score(predictions, targets, ["auc"], top_k=1)
    assert scores["auc"] == pytest.approx(1.0)
    all_positive = get_task_type("multilabel").score(predictions, np.ones_like(targets), ["auc"], top_k=1)
    assert all_positive["auc"] is None


# ---------------------------------------------------------------------------
# Task type properties and lookup


@pytest.mark.parametrize(
    ("name", "classes", "units", "activation"),
    [
        ("binary", 2, 1, "sigmoid"),
        ("multiclass", 5, 5, "softmax"),
        ("multilabel", 3, 3, "sigmoid"),
        ("regression", 0, 1, "linear"),
    ],
)
def test_output_units_and_activation(name, classes, units, activation):
    task = get_task_type(name)
    assert task.output_units(classes) == units
    assert task.activation == activation


@pytest.mark.parametrize("name", TASK_TYPES)
def test_keras_metrics_are_named_as_configured(name):
    task = get_task_type(name)
    metrics = task.keras_metrics(list(task.default_metrics), num_classes=3, top_k=2)
    assert [metric.name for metric in metrics] == list(task.default_metrics)


def test_unknown_task_type_raises_config_error_naming_where():
    with pytest.raises(ConfigError, match="tasks.kind.type") as error:
        get_task_type("multiclas", "tasks.kind.type")
    assert "multiclass" in str(error.value)


@pytest.mark.parametrize(
    "task_type, probabilities, classes, expected",
    [
        ("binary", [[0.2], [0.5], [0.51]], ["no", "yes"], ["no", "no", "yes"]),
        ("multiclass", [[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]], ["a", "b", "c"], ["b", "a"]),
        ("multilabel", [[0.9, 0.1, 0.6], [0.1, 0.2, 0.3], [0.6, 0.7, 0.8]], ["x", "y", "z"], ["x|z", "", "x|y|z"]),
    ],
)
def test_predicted_labels_follow_the_scoring_rule(task_type, probabilities, classes, expected):
    predicted = get_task_type(task_type).predicted_labels(np.array(probabilities, np.float32), classes, "|")
    assert [value.decode() for value in predicted.numpy()] == expected


def test_regression_has_no_predicted_labels():
    assert get_task_type("regression").predicted_labels(np.zeros((2, 1), np.float32), [], "|") is None


@pytest.mark.parametrize(
    ("task_type", "raw", "classes", "expected"),
    [
        ("binary", ["no", "yes", "", " yes "], ["no", "yes"], [[0.0], [1.0], [0.0], [1.0]]),
        ("multiclass", ["b", "", "c", "a"], ["a", "b", "c"], [1, 0, 2, 0]),
        ("multilabel", ["a|c", "", "b", " c | a "], ["a", "b", "c"], [[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 0, 1]]),
        ("regression", [1.5, float("nan"), -2.0, 0.0], [], [[1.5], [0.0], [-2.0], [0.0]]),
    ],
)
def test_one_label_rule_for_tables_and_for_streamed_batches(task_type, raw, classes, expected):
    """Tables (training, evaluation) run the task type's `encode_tf` eagerly; streamed batches run it in tf.data."""
    import tensorflow as tf

    from keras_mtmm.preprocessing.labels import encode_labels_tf
    from keras_mtmm.tasks.base import class_table

    kind = get_task_type(task_type)
    values = np.asarray(raw, dtype=np.float32 if task_type == "regression" else object)
    targets, mask = kind.encode(values, classes, "tasks.t.label", "|")
    np.testing.assert_array_equal(targets, np.asarray(expected, dtype=targets.dtype))
    np.testing.assert_array_equal(mask, [float(value == value and str(value).strip() != "") for value in raw])
    tasks = {"t": {"type": task_type, "label": "y"}}
    column = tf.constant(values if task_type == "regression" else list(raw))
    batches = tf.data.Dataset.from_tensors({"y": column}).map(
        lambda columns: encode_labels_tf(columns, tasks, {"t": classes}, {"t": class_table(classes)}, "|")
    )
    streamed_targets, streamed_masks = next(iter(batches))
    np.testing.assert_array_equal(streamed_targets["t"].numpy(), targets)
    np.testing.assert_array_equal(streamed_masks["t"].numpy(), mask)


@pytest.mark.parametrize(
    ("task_type", "raw", "label"),
    [
        ("multiclass", ["a", "zebra"], "zebra"),
        ("multilabel", ["a|b", "b|zebra|a"], "zebra"),
        ("multilabel", ["a||b"], ""),
    ],
)
def test_an_unknown_label_is_named_in_both_paths(task_type, raw, label):
    import tensorflow as tf

    from keras_mtmm.preprocessing.labels import encode_labels_tf
    from keras_mtmm.tasks.base import class_table

    with pytest.raises(UnknownLabel) as raised:
        get_task_type(task_type).encode(np.asarray(raw, dtype=object), ["a", "b"], "tasks.t.label", "|")
    assert raised.value.label == label and raised.value.row == len(raw) - 1
    tasks = {"t": {"type": task_type, "label": "y"}}
    batches = tf.data.Dataset.from_tensors({"y": tf.constant(raw)}).map(
        lambda columns: encode_labels_tf(columns, tasks, {"t": ["a", "b"]}, {"t": class_table(["a", "b"])}, "|")
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="keras_mtmm: tasks.t.label: labels not among"):
        next(iter(batches))


def test_group_auc_and_ndcg_match_hand_computed_values():
    from keras_mtmm.tasks.scores import group_auc, ndcg_at

    groups = np.array(["u1", "u2", "u1", "u3", "u2", "u1", "u3"], dtype=object)
    targets = np.array([1, 0, 0, 1, 1, 0, 1], dtype=np.float32)
    scores = np.array([0.9, 0.7, 0.8, 0.5, 0.2, 0.1, 0.6], dtype=np.float32)
    # u1: AUC 1 (3 rows), u2: AUC 0 (2 rows), u3: one class only (left out): (3 * 1 + 2 * 0) / 5
    assert group_auc(targets, scores, groups) == pytest.approx(0.6)
    # NDCG@2: u1 [1, 0] -> 1; u2 ranked [0, 1] -> (1 / log2 3) / 1; u3 [1, 1] -> 1
    assert ndcg_at(targets, scores, groups, 2) == pytest.approx((1 + 1 / np.log2(3) + 1) / 3)
    assert ndcg_at(targets, scores, groups, 1) == pytest.approx((1 + 0 + 1) / 3)
    assert group_auc(np.ones(3), scores[:3], groups[:3]) is None
    assert ndcg_at(np.zeros(3), scores[:3], groups[:3], 5) is None
