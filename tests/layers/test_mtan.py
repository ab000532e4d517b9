"""MTAN: the attention masks (formula, range, per task), the wiring against a step-by-step recomputation,
a left/right task pair learnt in three seeds, the config checks, and one run through train / reload / export."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.data.tables import load_splits
from keras_mtmm.errors import ConfigError
from keras_mtmm.layers.sharing import MTAN, TaskAttentionImageEncoder, build_sharing
from keras_mtmm.training.run import train
from tests.conftest import DEMO_CONFIG
from tests.support.layer_round_trip import check_round_trips
from tests.weighting.test_sharing_weighting_matrix import TWO_BY_TWO

TASKS = ["left", "right"]


def _np(value) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value))


def _images(seed=0, batch=3, size=16):
    return np.random.default_rng(seed).uniform(size=(batch, size, size, 3)).astype(np.float32)


def _encoder(**overrides):
    arguments = {"filters": [4, 8], "kernel_size": 3, "units": 6, "pooling": "grid", "grid": [2, 2]}
    return TaskAttentionImageEncoder(TASKS, **{**arguments, **overrides})


def _group_norm_numpy(x, norm):
    groups = norm.groups
    b, h, w, c = x.shape
    grouped = x.reshape(b, h, w, groups, c // groups)
    mean = grouped.mean(axis=(1, 2, 4), keepdims=True)
    var = grouped.var(axis=(1, 2, 4), keepdims=True)
    normalized = ((grouped - mean) / np.sqrt(var + norm.epsilon)).reshape(b, h, w, c)
    return normalized * _np(norm.gamma) + _np(norm.beta)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_first_block_masks_are_the_formula():
    """mask = sigmoid(conv1x1_b(ReLU(GN(conv1x1_a(s_0))))), computed in NumPy from the layer's weights."""
    keras.utils.set_random_seed(0)
    images = _images()
    encoder = _encoder()
    encoder(images)
    shared = _np(keras.ops.relu(encoder.norms[0](encoder.convs[0](images))))
    masks = encoder.attention_masks(images)
    for task in TASKS:
        modules = encoder.attention[task][0]
        squeezed = shared @ _np(modules["squeeze"].kernel)[0, 0]
        hidden = np.maximum(_group_norm_numpy(squeezed, modules["norm"]), 0.0)
        expected = _sigmoid(hidden @ _np(modules["mask"].kernel)[0, 0] + _np(modules["mask"].bias))
        np.testing.assert_allclose(_np(masks[task][0]), expected, rtol=1e-5, atol=1e-5)


def test_masks_are_in_0_1_per_task_and_block():
    keras.utils.set_random_seed(0)
    images = _images(batch=4)
    encoder = _encoder(filters=[4, 8, 8])
    masks = {task: [_np(m) for m in value] for task, value in encoder.attention_masks(images).items()}
    assert list(masks) == TASKS
    for task, per_block in masks.items():
        assert [m.shape for m in per_block] == [(4, 16, 16, 4), (4, 8, 8, 8), (4, 4, 4, 8)]
        for mask in per_block:
            assert mask.min() > 0.0 and mask.max() < 1.0, task
            assert mask.std() > 1e-3  # varies over positions and channels: not a constant gate
    for block in range(3):
        assert np.abs(masks["left"][block] - masks["right"][block]).mean() > 1e-3


def test_each_task_reads_the_shared_blocks_through_its_own_masks():
    """The wiring, step by step from the layer's own sublayers: masks on s_j, [s_j, p_{j-1}] into the next
    mask, shared f_j, the pooled head and each task's projection."""
    keras.utils.set_random_seed(0)
    images = _images()
    encoder = _encoder()
    outputs = encoder(images)
    x, previous = images, dict.fromkeys(TASKS)
    for j in range(2):
        shared = keras.ops.relu(encoder.norms[j](encoder.convs[j](x)))
        for task in TASKS:
            modules = encoder.attention[task][j]
            reads = shared if previous[task] is None else keras.ops.concatenate([shared, previous[task]], axis=-1)
            mask = keras.ops.sigmoid(modules["mask"](keras.ops.relu(modules["norm"](modules["squeeze"](reads)))))
            attended = mask * shared
            if j == 0:
                attended = keras.ops.relu(encoder.shared_norms[0](encoder.shared_convs[0](attended)))
            previous[task] = encoder.pools[j](attended)
        x = encoder.pools[j](shared)
    for task in TASKS:
        pooled = _np(previous[task]).reshape(3, 2, 2, 2, 2, 8).mean(axis=(2, 4)).reshape(3, -1)  # 4x4 -> 2x2 cells
        expected = _np(encoder.projections[task](pooled))
        np.testing.assert_allclose(_np(outputs[task]), expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(_np(outputs["left"]), _np(outputs["right"]), atol=1e-3)
    # The shared conv base and f_j are shared: one set of weights, whatever the number of tasks.
    three = TaskAttentionImageEncoder(["a", "b", "c"], filters=[4, 8], units=6, grid=[2, 2])
    three(images)
    shared_weights = sum(int(np.prod(w.shape)) for layer in encoder.convs + encoder.shared_convs for w in layer.weights)
    assert sum(int(np.prod(w.shape)) for layer in three.convs + three.shared_convs for w in layer.weights) == (
        shared_weights
    )


# ---------------------------------------------------------------------------
# Learning: "is there an object on the left / on the right", 3 seeds


def _left_right_data(rng, rows):
    images = rng.uniform(0, 0.3, size=(rows, 16, 16, 3)).astype(np.float32)
    left, right = rng.integers(0, 2, rows), rng.integers(0, 2, rows)
    for i in range(rows):
        for present, first_column in ((left[i], 0), (right[i], 8)):
            if present:
                row, column = rng.integers(0, 12), first_column + rng.integers(0, 4)
                images[i, row : row + 4, column : column + 4, :] = 1.0
    return images, {"left": left[:, None].astype(np.float32), "right": right[:, None].astype(np.float32)}


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_left_and_right_tasks_both_learn_with_their_own_masks(seed):
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    images, labels = _left_right_data(rng, 320)
    test_images, test_labels = _left_right_data(rng, 256)
    encoder = _encoder(units=8, name="image_encoder")
    inputs = keras.Input((16, 16, 3))
    features = encoder(inputs)
    outputs = {task: keras.layers.Dense(1, activation="sigmoid", name=task)(features[task]) for task in TASKS}
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), loss="binary_crossentropy", metrics={t: ["accuracy"] for t in TASKS})
    before = model.evaluate(test_images, test_labels, verbose=0, return_dict=True)
    model.fit(images, labels, batch_size=32, epochs=5, verbose=0)
    after = model.evaluate(test_images, test_labels, verbose=0, return_dict=True)
    for task in TASKS:
        assert before[f"{task}_accuracy"] < 0.75
        assert after[f"{task}_accuracy"] >= 0.95, (task, after)
    masks = encoder.attention_masks(test_images[:64])
    for block in range(2):
        assert np.abs(_np(masks["left"][block]) - _np(masks["right"][block])).mean() > 0.02
    # Each task's answer goes through its own masks: giving the left task the right task's masks changes it.
    expected = model.predict(test_images[:64], verbose=0)["left"]
    for own, other in zip(encoder.attention["left"], encoder.attention["right"]):
        for key in own:
            for mine, theirs in zip(own[key].weights, other[key].weights):
                mine.assign(theirs)
    assert np.abs(model.predict(test_images[:64], verbose=0)["left"] - expected).mean() > 0.01


# ---------------------------------------------------------------------------
# Serialization, build_sharing, the config checks


def test_config_and_keras_file_round_trips(tmp_path):
    images = _images()
    encoder = check_round_trips(
        lambda: _encoder(pooling="flatten", dropout=0.1, name="image_encoder"),
        {"images": images},
        tmp_path,
        randomize=None,
    )
    assert type(encoder) is TaskAttentionImageEncoder
    features = {task: np.asarray(value) for task, value in encoder(images).items()}
    towers = MTAN(TASKS, tower_units=[3], activation="gelu", name="sharing")
    check_round_trips(
        lambda: MTAN(TASKS, tower_units=[3], activation="gelu", name="sharing"),
        features,
        tmp_path,
        call=lambda layer, x: layer(x),
        randomize=None,
    )
    # A plain tensor is every task's input.
    same = towers(keras.ops.ones((2, 6)))
    assert {t: tuple(v.shape) for t, v in same.items()} == {"left": (2, 3), "right": (2, 3)}


def test_build_sharing_and_the_image_encoder_builder():
    from keras_mtmm.config.schema import EncoderConfig, SharingConfig

    layer = build_sharing(SharingConfig.of(type="mtan", tower_units=[5], dropout=0.0), ["x", "y"], name="sharing")
    assert type(layer) is MTAN and layer.get_config()["tower_units"] == [5] and layer.takes_task_inputs
    cnn = EncoderConfig.of(type="cnn", filters=[4], units=7, pooling="average")
    config = MTAN.build_image_encoder("photo", cnn, ["x"]).get_config()
    assert config["name"] == "photo_encoder"
    assert (config["filters"], config["units"], config["pooling"]) == ([4], 7, "average")


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"modalities": {"numeric": {"type": "numeric", "columns": ["weight_kg"]}}}, "sharing.type"),
        ({"fusion": {"strategy": "late"}}, "fusion.strategy"),
        ({"fusion": {"strategy": "cross_attention"}}, "fusion.strategy"),
        ({"weighting": {"strategy": "mgda"}}, "weighting.strategy"),
    ],
)
def test_config_errors_say_what_mtan_needs(change, where):
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["sharing"]["type"] = "mtan"
    for section, value in change.items():
        raw[section] = value if section == "modalities" else {**raw[section], **value}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw)
    assert caught.value.where == where
    if where == "sharing.type":
        assert "cnn" in caught.value.what and "image modality" in caught.value.fix


def test_per_task_fusion_weights_are_inspected(tiny_config_factory, untrained_factory, tmp_path):
    from keras_mtmm.evaluation.inspection import fusion_summary

    config = tiny_config_factory("sharing.type=mtan", "fusion.strategy=attention")
    model, preprocessor = untrained_factory(config, tmp_path)
    assert type(model.get_layer("image_encoder")) is TaskAttentionImageEncoder
    summary = fusion_summary(model, preprocessor, {k: v[:40] for k, v in load_splits(config)["validation"].items()})
    assert list(summary) == list(config.tasks)
    for weights in summary.values():
        assert list(weights) == list(config.modalities)
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-4)
    assert summary["shape"] != summary["premium"]  # each task fuses its own image vector


# ---------------------------------------------------------------------------
# End to end: train 2 steps with a gradient strategy, reload best.keras, export


def test_trains_reloads_and_exports(tiny_config_factory, tmp_path):
    from keras_mtmm.run_folder import load_checkpoint

    config = tiny_config_factory(*TWO_BY_TWO, "sharing.type=mtan", "weighting.strategy=pcgrad")
    result = train(config, output_dir=tmp_path / "run", export_dir=tmp_path / "models", verbose=0)
    assert type(result.model.get_layer("sharing")) is MTAN
    assert type(result.model.get_layer("image_encoder")) is TaskAttentionImageEncoder
    assert np.isfinite(result.history["loss"]).all()
    raw = result.preprocessor.raw_inputs(load_splits(config)["test"])
    raw["image"][:3] = b""  # missing images still serve
    features = result.preprocessor.transform(raw)
    expected = result.model.predict(features, verbose=0)
    reloaded = load_checkpoint(result.run_dir / "best.keras").network.predict(features, verbose=0)
    serving = tf.saved_model.load(str(result.export_path)).signatures["serving_default"]
    served = serving(**{name: tf.constant(values) for name, values in raw.items()})
    assert sorted(served) == ["premium", "price"]
    for task in ("premium", "price"):
        assert np.isfinite(expected[task]).all() and np.abs(expected[task]).sum() > 0
        np.testing.assert_allclose(reloaded[task], expected[task], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(served[task].numpy(), expected[task], rtol=1e-5, atol=1e-5)
    health = json.loads((result.run_dir / "inspection.json").read_text())["health"]
    assert health["dead_units"]["image"]["units"] == 2 * 16  # both tasks' image vectors
