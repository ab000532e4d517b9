"""Tests for the synthetic demo data generator (keras_mtmm.data.demo)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.data.demo import (
    COLOUR_RGB,
    COLOURS,
    DEMO_COLUMNS,
    FILLER_WORDS,
    MATERIAL_PRICE_BONUS,
    MATERIALS,
    SHAPE_PRICE_BONUS,
    SHAPES,
    WARM_PRICE_BONUS,
    _generate_demo_with_latents,
    encode_png,
    generate_demo,
)

NUM_EXAMPLES = 2000
SEED = 123
IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def table_and_latents() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One shared table (with latents) for the statistical tests."""
    return _generate_demo_with_latents(NUM_EXAMPLES, SEED, IMAGE_SIZE)


@pytest.fixture(scope="module")
def table(table_and_latents) -> dict[str, np.ndarray]:
    return table_and_latents[0]


@pytest.fixture(scope="module")
def latents(table_and_latents) -> dict[str, np.ndarray]:
    return table_and_latents[1]


@pytest.fixture(scope="module")
def decoded_images(table) -> np.ndarray:
    """All images decoded with TensorFlow, as uint8 [N, S, S, 3]."""
    return np.stack([tf.io.decode_png(png, channels=3).numpy() for png in table["image"]])


def _assert_tables_identical(left: dict[str, np.ndarray], right: dict[str, np.ndarray]) -> None:
    assert list(left) == list(right)
    for name, column in left.items():
        if column.dtype == object:
            assert list(column) == list(right[name]), name
        else:
            assert column.tobytes() == right[name].tobytes(), name


def _best_single_factor_accuracy(factor: np.ndarray, target: np.ndarray) -> float:
    """Accuracy of the best predictor of a boolean target from one discrete factor."""
    correct = 0
    for value in np.unique(factor):
        rows = factor == value
        correct += max(target[rows].sum(), (~target[rows]).sum())
    return correct / len(target)


# --- structure -----------------------------------------------------------


def test_demo_columns_names_and_kinds():
    assert DEMO_COLUMNS == {
        "image": "image",
        "description": "text",
        "weight_kg": "numeric",
        "age_days": "numeric",
        "rating": "numeric",
        "material": "categorical",
        "region": "categorical",
        "shape": "label",
        "premium": "label",
        "price": "label",
    }


def test_table_has_every_column_with_right_length_and_dtype(table):
    assert list(table) == list(DEMO_COLUMNS)
    for name, column in table.items():
        assert isinstance(column, np.ndarray), name
        assert column.shape == (NUM_EXAMPLES,), name
    for name in ("weight_kg", "age_days", "rating", "price"):
        assert table[name].dtype == np.float32, name
    assert table["image"].dtype == object
    assert all(type(png) is bytes for png in table["image"])
    for name in ("description", "material", "region", "shape", "premium"):
        assert table[name].dtype == object, name
        assert all(type(value) is str for value in table[name]), name


def test_categorical_and_label_vocabularies(table):
    assert set(table["material"]) == set(MATERIALS)
    assert set(table["region"]) == {"north", "south", "east", "west", ""}
    assert set(table["shape"]) == set(SHAPES) | {""}
    assert set(table["premium"]) == {"yes", "no"}


def test_single_example_and_other_image_size():
    table = generate_demo(1, seed=0, image_size=20)
    assert all(column.shape == (1,) for column in table.values())
    pixels = tf.io.decode_png(table["image"][0]).numpy()
    assert pixels.shape == (20, 20, 3)


# --- determinism ---------------------------------------------------------


def test_same_seed_gives_identical_table():
    _assert_tables_identical(generate_demo(300, seed=7), generate_demo(300, seed=7))


def test_different_seed_gives_different_table():
    first, second = generate_demo(300, seed=7), generate_demo(300, seed=8)
    assert list(first["image"]) != list(second["image"])
    assert list(first["description"]) != list(second["description"])
    assert not np.array_equal(first["age_days"], second["age_days"])


def test_generation_does_not_touch_global_rng():
    np.random.seed(0)
    expected = np.random.random()
    np.random.seed(0)
    generate_demo(50, seed=1)
    assert np.random.random() == expected


# --- argument validation -------------------------------------------------


@pytest.mark.parametrize("num_examples", [0, -3])
def test_rejects_bad_num_examples(num_examples):
    with pytest.raises(ValueError, match="num_examples"):
        generate_demo(num_examples, seed=0)


def test_rejects_small_image_size():
    with pytest.raises(ValueError, match="image_size"):
        generate_demo(10, seed=0, image_size=15)


@pytest.mark.parametrize(
    "bad_pixels",
    [
        np.zeros((4, 4, 3), dtype=np.float32),
        np.zeros((4, 4), dtype=np.uint8),
        np.zeros((4, 4, 4), dtype=np.uint8),
        np.zeros((0, 4, 3), dtype=np.uint8),
    ],
)
def test_encode_png_rejects_bad_input(bad_pixels):
    with pytest.raises(ValueError, match="pixels"):
        encode_png(bad_pixels)


# --- images ----------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(1, 1), (7, 13), (32, 32)])
def test_encode_png_round_trips_through_tensorflow(height, width):
    pixels = np.random.default_rng(height * width).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    png = encode_png(pixels)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    decoded = tf.io.decode_png(png)
    assert decoded.dtype == tf.uint8
    np.testing.assert_array_equal(decoded.numpy(), pixels)


def test_encode_png_accepts_non_contiguous_arrays():
    pixels = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3)[::2, ::-1]
    np.testing.assert_array_equal(tf.io.decode_png(encode_png(pixels)).numpy(), pixels)


def test_every_image_decodes_to_rgb_of_requested_size(decoded_images):
    assert decoded_images.shape == (NUM_EXAMPLES, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert decoded_images.dtype == np.uint8


def _saturated_pixels(images: np.ndarray) -> np.ndarray:
    """Pixels far from grey, i.e. (almost only) shape pixels: bool [N, S, S]."""
    channels = images.astype(np.int32)
    return channels.max(axis=-1) - channels.min(axis=-1) > 80


def test_shape_colour_is_recoverable_from_pixels(decoded_images, latents):
    saturated = _saturated_pixels(decoded_images)
    mean_colour = (decoded_images * saturated[..., None]).sum(axis=(1, 2)) / saturated.sum(axis=(1, 2))[:, None]
    palette = np.array([COLOUR_RGB[c] for c in COLOURS], dtype=np.float64)
    distances = np.linalg.norm(mean_colour[:, None, :] - palette[None, :, :], axis=-1)
    assert np.mean(distances.argmin(axis=1) == latents["colour"]) > 0.99


def test_area_matches_pixels_and_spans_the_size_range(decoded_images, latents):
    pixel_area = _saturated_pixels(decoded_images).mean(axis=(1, 2))
    assert np.abs(pixel_area - latents["area"]).max() < 0.05
    # Smallest circle ~ pi/4 * 0.35^2 ~ 0.096, largest square ~ 0.64 of the canvas.
    assert latents["area"].min() < 0.12
    assert latents["area"].max() > 0.55
    assert np.all((latents["extent"] >= 0.35) & (latents["extent"] <= 0.80))


def test_each_shape_has_its_expected_fill_ratio(latents):
    fill_ratio = latents["area"] / latents["extent"] ** 2
    expected = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5}
    for index, name in enumerate(SHAPES):
        ratios = fill_ratio[latents["shape"] == index]
        assert abs(np.median(ratios) - expected[name]) < 0.08, name


# --- text ------------------------------------------------------------------


def test_descriptions_have_expected_form(table):
    descriptions = table["description"]
    empty_rate = np.mean(descriptions == "")
    assert 0.01 < empty_rate < 0.06
    vocabulary = set(FILLER_WORDS) | set(SHAPES) | set(COLOURS) | set(MATERIALS)
    for description in descriptions[descriptions != ""]:
        words = description.split(" ")
        assert 5 <= len(words) <= 12
        assert description == description.lower()
        assert set(words) <= vocabulary


def test_description_words_are_informative_as_specified(table, latents):
    present = table["description"] != ""
    words = [set(d.split()) for d in table["description"]]
    colour_named = np.array([bool(w & set(COLOURS)) for w in words])
    material_named = np.array([bool(w & set(MATERIALS)) for w in words])
    shape_named = np.array([bool(w & set(SHAPES)) for w in words])
    assert 0.25 < colour_named[present].mean() < 0.35
    assert 0.45 < material_named[present].mean() < 0.55
    assert 0.45 < shape_named[present].mean() < 0.55
    for row in np.flatnonzero(colour_named):
        assert words[row] & set(COLOURS) == {COLOURS[latents["colour"][row]]}
    for row in np.flatnonzero(material_named):
        assert words[row] & set(MATERIALS) == {MATERIALS[latents["material"][row]]}
    shape_right = np.array([SHAPES[latents["shape"][row]] in words[row] for row in np.flatnonzero(shape_named)])
    assert 0.80 < shape_right.mean() < 0.90


# --- tabular features ------------------------------------------------------


def test_numeric_ranges_and_missing_rates(table):
    weight = table["weight_kg"]
    assert 0.005 < np.isnan(weight).mean() < 0.04
    assert 1.2 < np.nanmedian(weight) < 1.9
    assert np.all(weight[~np.isnan(weight)] > 0)
    assert np.all((table["age_days"] >= 0) & (table["age_days"] <= 365))
    assert np.all((table["rating"] >= 1) & (table["rating"] <= 5))
    assert not np.isnan(table["age_days"]).any() and not np.isnan(table["rating"]).any()
    assert 0.005 < np.mean(table["region"] == "") < 0.04


def test_material_column_equals_latent_material(table, latents):
    assert list(table["material"]) == [MATERIALS[i] for i in latents["material"]]


# --- labels ----------------------------------------------------------------


def test_shape_labels_are_true_shapes_or_missing(table, latents):
    labelled = table["shape"] != ""
    assert 0.02 < 1 - labelled.mean() < 0.09
    assert list(table["shape"][labelled]) == [SHAPES[i] for i in latents["shape"][labelled]]


def test_premium_is_xor_of_warm_colour_and_luxe_material(table, latents):
    premium = table["premium"] == "yes"
    warm = np.isin(latents["colour"], [COLOURS.index("red"), COLOURS.index("yellow")])
    luxe = np.isin(table["material"], ["metal", "glass"])
    np.testing.assert_array_equal(warm, latents["warm"])
    np.testing.assert_array_equal(luxe, latents["luxe"])
    agreement = np.mean(premium == (warm ^ luxe))
    assert 0.92 < agreement < 0.98
    np.testing.assert_array_equal(premium, warm ^ luxe ^ latents["premium_flipped"])
    assert 0.4 < premium.mean() < 0.6


def test_premium_needs_both_modalities(table, latents):
    premium = table["premium"] == "yes"
    assert _best_single_factor_accuracy(latents["colour"], premium) < 0.6
    assert _best_single_factor_accuracy(latents["material"], premium) < 0.6
    both = latents["colour"] * len(MATERIALS) + latents["material"]
    assert _best_single_factor_accuracy(both, premium) > 0.9


def test_premium_is_recoverable_from_decoded_image_and_material(table, decoded_images):
    saturated = _saturated_pixels(decoded_images)
    mean_colour = (decoded_images * saturated[..., None]).sum(axis=(1, 2)) / saturated.sum(axis=(1, 2))[:, None]
    red, green, _ = mean_colour.T
    warm_from_image = (red > 150) & (green < 120) | (red > 150) & (green > 150)
    luxe = np.isin(table["material"], ["metal", "glass"])
    assert np.mean((table["premium"] == "yes") == (warm_from_image ^ luxe)) >= 0.9


def test_price_is_label_scarce_and_follows_its_formula(table, latents):
    price = table["price"]
    missing = np.isnan(price)
    assert 0.8 < missing.mean() < 0.9
    weight = table["weight_kg"].astype(np.float64)
    weight = np.where(np.isnan(weight), np.nanmedian(weight), weight)
    shape_bonus = np.array([SHAPE_PRICE_BONUS[SHAPES[s]] for s in latents["shape"]])
    bonus = np.array([MATERIAL_PRICE_BONUS[m] for m in table["material"]])
    clean = 20 + shape_bonus + WARM_PRICE_BONUS * latents["warm"] + bonus + 6 * weight
    residual = price[~missing] - clean[~missing]
    assert abs(residual.mean()) < 0.3
    assert 1.7 < residual.std() < 2.3


def test_price_depends_on_the_image_features_the_other_tasks_learn(table, latents):
    usable = ~np.isnan(table["price"]) & ~np.isnan(table["weight_kg"])
    price = table["price"][usable]
    assert np.corrcoef(price, table["weight_kg"][usable])[0, 1] > 0.3
    assert np.corrcoef(price, latents["shape"][usable])[0, 1] > 0.2  # circle < square < triangle
    assert np.corrcoef(price, latents["warm"][usable])[0, 1] > 0.2
    assert abs(np.corrcoef(price, table["age_days"][usable])[0, 1]) < 0.1
