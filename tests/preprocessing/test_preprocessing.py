"""The Preprocessor: adapted on train only, identical after save/load, and each modality's conventions."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.data.demo import encode_png
from keras_mtmm.data.tones import wav_bytes
from keras_mtmm.errors import DataError
from keras_mtmm.preprocessing.preprocessor import Preprocessor

AUDIO = {"sample_rate": 8000, "duration_s": 0.25, "num_mel_bins": 16, "frame_ms": 25.0, "hop_ms": 10.0}
MODALITIES = {
    "photo": {"type": "image", "columns": ["img"], "image_size": [8, 8], "max_tokens": 10, "sequence_length": 4},
    "words": {"type": "text", "columns": ["txt"], "image_size": [8, 8], "max_tokens": 10, "sequence_length": 4},
    "nums": {"type": "numeric", "columns": ["a", "b"], "image_size": [8, 8], "max_tokens": 10, "sequence_length": 4},
    "cats": {"type": "categorical", "columns": ["c"], "image_size": [8, 8], "max_tokens": 10, "sequence_length": 4},
    "sound": {"type": "audio", "columns": ["w"], **AUDIO},
}
TASKS = {
    "kind": {"type": "multiclass", "label": "y", "classes": None},
    "size": {"type": "regression", "label": "z", "classes": None},
}


def pixels(value: int, height: int = 16, width: int = 16) -> np.ndarray:
    return np.full((height, width, 3), value, dtype=np.uint8)


def tone(frequency: float, sample_rate: int = 8000, duration_s: float = 0.25) -> bytes:
    time = np.arange(int(sample_rate * duration_s)) / sample_rate
    return wav_bytes(0.5 * np.sin(2 * np.pi * frequency * time), sample_rate)


def make_table() -> dict[str, np.ndarray]:
    return {
        "img": np.array([encode_png(pixels(255)), encode_png(pixels(0)), b"", encode_png(pixels(51))], dtype=object),
        "txt": np.array(["red box", "blue box", "", "red red ball"], dtype=object),
        "a": np.array([1.0, 3.0, np.nan, 5.0], dtype=np.float32),
        "b": np.array([10.0, 10.0, 10.0, 10.0], dtype=np.float32),
        "c": np.array(["x", "y", "", "x"], dtype=object),
        "w": np.array([tone(300.0), tone(1200.0, 16000), tone(600.0, 4000, 0.1), b""], dtype=object),
        "y": np.array(["cat", "dog", "", "cat"], dtype=object),
        "z": np.array([1.0, np.nan, 3.0, 5.0], dtype=np.float32),
    }


@pytest.fixture()
def adapted(tmp_path):
    preprocessor = Preprocessor(MODALITIES, TASKS)
    preprocessor.adapt(make_table(), tmp_path / "pre")
    return preprocessor


def transform(preprocessor, table):
    return {k: v.numpy() for k, v in preprocessor.transform(preprocessor.raw_inputs(table)).items()}


def test_each_modality_follows_its_convention(adapted):
    out = transform(adapted, make_table())
    # image: decoded, resized to 8x8, in [0, 1]; a missing image is all zeros
    assert out["photo"].shape == (4, 8, 8, 3)
    np.testing.assert_allclose(out["photo"][0], 1.0, atol=1e-6)
    np.testing.assert_allclose(out["photo"][2], 0.0)
    np.testing.assert_allclose(out["photo"][3], 0.2, atol=1e-6)
    # text: ids, 0 = padding, most frequent token first ("red" x3, "box" x2)
    vocabulary = ["red", "box", "ball", "blue"]
    assert out["words"].shape == (4, 4)
    np.testing.assert_array_equal(out["words"][0], [2 + vocabulary.index("red"), 2 + vocabulary.index("box"), 0, 0])
    np.testing.assert_array_equal(out["words"][2], [0, 0, 0, 0])
    # numeric: NaN-aware mean/variance from train; a missing value becomes 0 (the mean)
    mean, std = 3.0, np.sqrt(8.0 / 3.0)
    np.testing.assert_allclose(out["nums"][:, 0], [(1 - mean) / std, 0.0, 0.0, (5 - mean) / std], atol=1e-5)
    np.testing.assert_allclose(out["nums"][:, 1], 0.0, atol=1e-6)  # constant column: variance 1, not 0
    # categorical: 0 = missing, 1 = out of vocabulary, then by frequency
    np.testing.assert_array_equal(out["cats"][:, 0], [2, 3, 0, 2])


def test_unseen_values_at_serving_time(adapted):
    table = make_table()
    table["txt"] = np.array(["zebra red", "", "", ""], dtype=object)
    table["c"] = np.array(["never seen", "x", "", " x "], dtype=object)
    out = transform(adapted, table)
    assert out["words"][0][0] == 1 and out["words"][0][1] == 2  # OOV, then "red"
    np.testing.assert_array_equal(out["cats"][:, 0], [1, 2, 0, 2])


def test_jpeg_is_decoded_too(adapted):
    jpeg = tf.io.encode_jpeg(tf.constant(pixels(200)), quality=100).numpy()
    table = make_table()
    table["img"] = np.array([jpeg] * 4, dtype=object)
    np.testing.assert_allclose(transform(adapted, table)["photo"], 200 / 255, atol=0.02)


def test_labels_targets_masks_and_statistics(adapted):
    targets, masks = adapted.encode_labels(make_table())
    assert adapted.classes("kind") == ["cat", "dog"]
    np.testing.assert_array_equal(masks["kind"], [1, 1, 0, 1])
    np.testing.assert_array_equal(targets["kind"][masks["kind"] > 0], [0, 1, 0])
    np.testing.assert_array_equal(masks["size"], [1, 0, 1, 1])
    offset, scale = adapted.target_statistics("size")
    assert offset == pytest.approx(3.0) and scale == pytest.approx(np.std([1.0, 3.0, 5.0]))
    assert adapted.target_statistics("kind") == (0.0, 1.0)
    bad = make_table()
    bad["y"] = np.array(["cat", "cow", "", "dog"], dtype=object)
    with pytest.raises(DataError, match="'cow'"):
        adapted.encode_labels(bad)


def test_save_and_load_give_identical_outputs(adapted, tmp_path):
    copy = adapted.save(tmp_path / "copy")
    loaded = Preprocessor.load(copy)
    before, after = transform(adapted, make_table()), transform(loaded, make_table())
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])
    assert loaded.classes("kind") == adapted.classes("kind")
    assert loaded.vocabulary_sizes("words") == adapted.vocabulary_sizes("words") == [6]


def test_runs_inside_tf_data_map(adapted):
    raw = adapted.raw_inputs(make_table())
    dataset = tf.data.Dataset.from_tensor_slices(raw).batch(3).map(adapted.transform)
    batches = list(dataset)
    assert [b["photo"].shape[0] for b in batches] == [3, 1]
    np.testing.assert_array_equal(
        np.concatenate([b["cats"].numpy() for b in batches]), transform(adapted, make_table())["cats"]
    )


def test_load_from_a_folder_without_state_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no preprocessor state"):
        Preprocessor.load(tmp_path)


def test_every_modality_type_keeps_its_own_contract(adapted):
    """Each registered ModalityType: the model input it declares is what it gives, its raw serving input is
    what it takes, and its missing value reads as missing (presence 0)."""
    from keras_mtmm.registry import MODALITY_TYPES

    assert sorted({spec["type"] for spec in MODALITIES.values()}) == MODALITY_TYPES.names()  # all covered
    raw = adapted.raw_inputs(make_table())
    features = adapted.transform(raw)
    signature = adapted.raw_input_signature()
    for position, (name, spec) in enumerate(MODALITIES.items()):
        kind = adapted.kinds[name]
        shape, dtype = kind.model_input(spec)
        assert tuple(features[name].shape[1:]) == shape and features[name].dtype.name == dtype, name
        assert signature[name].is_compatible_with(tf.constant(raw[name])), name
        removed = {**raw, name: kind.missing(raw[name])}
        presence = adapted.presence(removed).numpy()
        assert (presence[:, position] == 0).all(), name
        assert presence[0].sum() == len(MODALITIES) - 1, name  # only that modality is gone


def test_the_preprocessor_is_a_keras_layer_whose_config_and_assets_rebuild_it(adapted, tmp_path):
    import keras

    config = keras.saving.serialize_keras_object(adapted)
    rebuilt = keras.saving.deserialize_keras_object(config)
    assert isinstance(rebuilt, keras.layers.Layer) and not rebuilt.adapted
    adapted.save_assets(tmp_path / "assets")
    rebuilt.load_assets(tmp_path / "assets")  # what keras.models.load_model does with a .keras file's assets
    before, after = transform(adapted, make_table()), transform(rebuilt, make_table())
    for name, values in before.items():
        np.testing.assert_array_equal(after[name], values, err_msg=name)


def test_a_token_with_a_unicode_line_separator_survives_the_keras_assets(tmp_path):
    """The vocabulary file is one token a line split on "\\n" only (as TF reads it), not on U+2028."""
    table = make_table()
    table["txt"] = np.array(["red x\u2028y", "x\u2028y box", "", "red"], dtype=object)
    preprocessor = Preprocessor(MODALITIES, TASKS)
    preprocessor.adapt(table, tmp_path / "pre")
    rebuilt = Preprocessor(MODALITIES, TASKS)
    preprocessor.save_assets(tmp_path / "assets")
    rebuilt.load_assets(tmp_path / "assets")
    assert rebuilt.vocabulary_sizes("words") == preprocessor.vocabulary_sizes("words")
    np.testing.assert_array_equal(transform(rebuilt, table)["words"], transform(preprocessor, table)["words"])


def test_from_config_with_an_experiment_config_names_from_settings(tiny_config_factory):
    """`from_config` is Keras' deserializer now; the old call with an ExperimentConfig says what to call."""
    with pytest.raises(TypeError, match=r"from_settings"):
        Preprocessor.from_config(tiny_config_factory())
