"""Synthetic multi-task, multi-modal demo data ("toy shop catalogue").

Each row describes one catalogue item: a small picture, a free-text description,
a few numeric and categorical attributes, and three labels. Everything is drawn
from ``np.random.default_rng(seed)``; the same ``(num_examples, seed,
image_size)`` always gives a byte-identical table, with no global RNG state,
files or network access.

Latent factors (drawn independently per row, uniformly unless noted):

* ``shape`` in {circle, square, triangle}, ``colour`` in {red, green, blue,
  yellow}, ``material`` in {wood, metal, plastic, glass}.
* ``extent``: the shape's bounding-box side, uniform in [0.35, 0.80] of the
  canvas side; its centre is uniform over the positions where it fits.
* ``warm = colour in {red, yellow}``; ``luxe = material in {metal, glass}``.

Feature columns:

* ``image`` (kind "image"): PNG bytes, RGB, ``image_size`` x ``image_size``.
  A filled circle, square (axis-aligned) or upright isosceles triangle in the
  row's colour on a grey background. The background grey level is uniform in
  [90, 170] per image with a per-channel tint in [-10, 10] and per-pixel
  Gaussian noise (std 14); the shape colour is a saturated prototype (red
  (220, 40, 40), green (40, 180, 60), blue (40, 70, 220), yellow
  (230, 210, 40)) with a per-image jitter in [-12, 12] and per-pixel noise
  (std 8). ``area`` is the fraction of canvas pixels covered by the shape.
* ``description`` (kind "text"): lowercase words joined by single spaces, 5 to
  12 words (uniform), in random order. It contains the shape word with
  probability 0.5 (when present, 15% of the time it names a *wrong* shape),
  the colour word with probability 0.3 (always right), the material word with
  probability 0.5 (always right), and filler words drawn uniformly (with
  replacement) from 30 neutral words ("nice", "item", "great", "box", ...).
  About 3% of descriptions are the empty string "" (missing text).
* ``weight_kg`` (kind "numeric", float32): lognormal with median 1.5 kg and
  log-std 0.6 (90% of values between ~0.56 and ~4.0). About 2% are NaN
  (missing).
* ``age_days`` (numeric, float32): uniform in [0, 365]; pure noise.
* ``rating`` (numeric, float32): uniform in [1, 5]; pure noise.
* ``material`` (kind "categorical", str): the latent material; never missing.
* ``region`` (categorical, str): uniform in {north, south, east, west}; pure
  noise. About 2% are "" (missing).

Label columns (kind "label"):

* ``shape`` (multiclass, str): the latent shape. Fully solvable from the
  image; the text alone names the right shape on ~42.5% of rows and a wrong
  one on ~7.5%. About 5% of labels are "" (unlabelled for this task).
* ``premium`` (binary, str "yes"/"no"): ``warm XOR luxe``, then 5% of labels
  flipped. ``warm`` is visible only in the image (and the text on ~30% of
  rows), ``luxe`` is in the ``material`` column (and the text on ~50% of
  rows), so the image alone or the tabular columns alone predict it at
  chance (~50%) while image + tabular together reach ~95%. Never missing.
* ``price`` (regression, float32), **label-scarce**:
  ``20 + shape_bonus + 8 * warm + material_bonus + 6 * weight_kg + N(0, 2)``
  with shape_bonus = {circle: 0, square: 6, triangle: 12} and
  material_bonus = {wood: 0, plastic: -5, metal: 8, glass: 12}. Where
  ``weight_kg`` is NaN the formula uses the median of the table's non-missing
  weights. Needs the image (shape and colour), the numeric column and the
  categorical column. Only 15% of rows are labelled (85% NaN): a price model
  trained alone has a few hundred pictures to learn shape and colour from,
  while the ``shape`` and ``premium`` tasks, labelled on nearly every row,
  need exactly those image features. This is the task that multi-task
  training is for.

All missingness is drawn independently of everything else.
"""

from __future__ import annotations

import numpy as np

from keras_mtmm.data.png import encode_png  # noqa: F401 (the demo's images; re-exported)

DEMO_COLUMNS: dict[str, str] = {
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

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow")
MATERIALS: tuple[str, ...] = ("wood", "metal", "plastic", "glass")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west")
FILLER_WORDS: tuple[str, ...] = (
    "nice", "item", "great", "box", "new", "fast", "shipping", "good",
    "product", "works", "fine", "gift", "handy", "modern", "classic",
    "simple", "useful", "solid", "design", "home", "decor", "piece",
    "lovely", "basic", "daily", "style", "arrived", "today", "seller", "thanks",
)  # fmt: skip

WARM_COLOURS: frozenset[str] = frozenset({"red", "yellow"})
LUXE_MATERIALS: frozenset[str] = frozenset({"metal", "glass"})
SHAPE_PRICE_BONUS: dict[str, float] = {"circle": 0.0, "square": 6.0, "triangle": 12.0}
WARM_PRICE_BONUS = 8.0
MATERIAL_PRICE_BONUS: dict[str, float] = {
    "wood": 0.0,
    "plastic": -5.0,
    "metal": 8.0,
    "glass": 12.0,
}
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 70, 220),
    "yellow": (230, 210, 40),
}

MIN_EXTENT = 0.35
MAX_EXTENT = 0.80
MIN_IMAGE_SIZE = 16
MIN_WORDS = 5
MAX_WORDS = 12

SHAPE_WORD_RATE = 0.5
WRONG_SHAPE_WORD_RATE = 0.15
COLOUR_WORD_RATE = 0.3
MATERIAL_WORD_RATE = 0.5
EMPTY_DESCRIPTION_RATE = 0.03
MISSING_WEIGHT_RATE = 0.02
MISSING_REGION_RATE = 0.02
MISSING_SHAPE_LABEL_RATE = 0.05
MISSING_PRICE_LABEL_RATE = 0.85
PREMIUM_FLIP_RATE = 0.05

WEIGHT_MEDIAN_KG = 1.5
WEIGHT_LOG_STD = 0.6
PRICE_NOISE_STD = 2.0

BACKGROUND_LEVEL_RANGE = (90.0, 170.0)
BACKGROUND_TINT = 10.0
BACKGROUND_NOISE_STD = 14.0
SHAPE_COLOUR_JITTER = 12.0
SHAPE_NOISE_STD = 8.0
# Upper bound on pixels rendered at once, to keep memory flat for big tables.
_PIXELS_PER_CHUNK = 1 << 22


def generate_demo(num_examples: int, seed: int, image_size: int = 32) -> dict[str, np.ndarray]:
    """Generate the demo column table.

    Returns a dict mapping every name in ``DEMO_COLUMNS`` to a 1-D numpy array
    of length ``num_examples``: object arrays of PNG ``bytes`` or ``str`` for
    image, text, categorical and string-label columns, float32 for numeric
    columns and ``price``. See the module docstring for the generative process.

    Raises:
        ValueError: if ``num_examples < 1`` or ``image_size < 16``.
    """
    table, _ = _generate_demo_with_latents(num_examples, seed, image_size)
    return table


def _generate_demo_with_latents(
    num_examples: int, seed: int, image_size: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Generate the column table together with the latent factors behind it.

    The latents dict (for tests and diagnostics) holds integer indices
    ``shape``, ``colour``, ``material`` (into ``SHAPES``, ``COLOURS``,
    ``MATERIALS``), boolean ``warm``, ``luxe`` and ``premium_flipped``, and
    float ``extent`` and ``area`` (pixel fraction covered by the shape).
    """
    _validate_arguments(num_examples, image_size)
    rng = np.random.default_rng(seed)
    latents = _draw_latents(rng, num_examples)
    descriptions = _draw_descriptions(rng, latents)
    features = _draw_tabular_features(rng, latents)
    images, area = _draw_images(rng, latents, image_size)
    latents["area"] = area
    labels = _draw_labels(rng, latents, features["weight_kg"])
    table = {"image": images, "description": descriptions, **features, **labels}
    return {name: table[name] for name in DEMO_COLUMNS}, latents


def _validate_arguments(num_examples: int, image_size: int) -> None:
    """Raise ValueError naming the offending argument when out of range."""
    if int(num_examples) != num_examples or num_examples < 1:
        raise ValueError(f"num_examples must be an integer >= 1, got {num_examples!r}")
    if int(image_size) != image_size or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}")


def _draw_latents(rng: np.random.Generator, num_examples: int) -> dict[str, np.ndarray]:
    """Draw the per-row latent factors: shape, colour, material, geometry, flips."""
    shape = rng.integers(0, len(SHAPES), size=num_examples)
    colour = rng.integers(0, len(COLOURS), size=num_examples)
    material = rng.integers(0, len(MATERIALS), size=num_examples)
    extent = rng.uniform(MIN_EXTENT, MAX_EXTENT, size=num_examples)
    half = extent / 2.0
    centre_x = rng.uniform(half, 1.0 - half)
    centre_y = rng.uniform(half, 1.0 - half)
    warm = np.isin(colour, [COLOURS.index(c) for c in sorted(WARM_COLOURS)])
    luxe = np.isin(material, [MATERIALS.index(m) for m in sorted(LUXE_MATERIALS)])
    premium_flipped = rng.random(num_examples) < PREMIUM_FLIP_RATE
    return {
        "shape": shape,
        "colour": colour,
        "material": material,
        "extent": extent,
        "centre_x": centre_x,
        "centre_y": centre_y,
        "warm": warm,
        "luxe": luxe,
        "premium_flipped": premium_flipped,
    }


def _draw_descriptions(rng: np.random.Generator, latents: dict[str, np.ndarray]) -> np.ndarray:
    """Draw the free-text descriptions (object array of str)."""
    num_examples = len(latents["shape"])
    has_shape_word = rng.random(num_examples) < SHAPE_WORD_RATE
    shape_word_wrong = rng.random(num_examples) < WRONG_SHAPE_WORD_RATE
    wrong_offset = rng.integers(1, len(SHAPES), size=num_examples)
    has_colour_word = rng.random(num_examples) < COLOUR_WORD_RATE
    has_material_word = rng.random(num_examples) < MATERIAL_WORD_RATE
    is_empty = rng.random(num_examples) < EMPTY_DESCRIPTION_RATE
    word_count = rng.integers(MIN_WORDS, MAX_WORDS + 1, size=num_examples)
    filler_index = rng.integers(0, len(FILLER_WORDS), size=(num_examples, MAX_WORDS))
    order_keys = rng.random((num_examples, MAX_WORDS))

    named_shape = np.where(
        shape_word_wrong,
        (latents["shape"] + wrong_offset) % len(SHAPES),
        latents["shape"],
    )
    descriptions = np.empty(num_examples, dtype=object)
    for row in range(num_examples):
        if is_empty[row]:
            descriptions[row] = ""
            continue
        words = []
        if has_shape_word[row]:
            words.append(SHAPES[named_shape[row]])
        if has_colour_word[row]:
            words.append(COLOURS[latents["colour"][row]])
        if has_material_word[row]:
            words.append(MATERIALS[latents["material"][row]])
        num_fillers = word_count[row] - len(words)
        words.extend(FILLER_WORDS[i] for i in filler_index[row, :num_fillers])
        order = np.argsort(order_keys[row, : len(words)], kind="stable")
        descriptions[row] = " ".join(words[i] for i in order)
    return descriptions


def _draw_tabular_features(rng: np.random.Generator, latents: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Draw the numeric and categorical feature columns, with missing values."""
    num_examples = len(latents["shape"])
    weight_kg = rng.lognormal(np.log(WEIGHT_MEDIAN_KG), WEIGHT_LOG_STD, size=num_examples)
    weight_kg[rng.random(num_examples) < MISSING_WEIGHT_RATE] = np.nan
    age_days = rng.uniform(0.0, 365.0, size=num_examples)
    rating = rng.uniform(1.0, 5.0, size=num_examples)
    region = _names(REGIONS, rng.integers(0, len(REGIONS), size=num_examples))
    region[rng.random(num_examples) < MISSING_REGION_RATE] = ""
    return {
        "weight_kg": weight_kg.astype(np.float32),
        "age_days": age_days.astype(np.float32),
        "rating": rating.astype(np.float32),
        "material": _names(MATERIALS, latents["material"]),
        "region": region,
    }


def _draw_labels(
    rng: np.random.Generator, latents: dict[str, np.ndarray], weight_kg: np.ndarray
) -> dict[str, np.ndarray]:
    """Draw the shape, premium and price labels (with unlabelled rows)."""
    num_examples = len(latents["shape"])
    shape = _names(SHAPES, latents["shape"])
    shape[rng.random(num_examples) < MISSING_SHAPE_LABEL_RATE] = ""

    is_premium = latents["warm"] ^ latents["luxe"] ^ latents["premium_flipped"]
    premium = _names(("no", "yes"), is_premium.astype(np.int64))

    price = _price(latents, weight_kg) + rng.normal(0.0, PRICE_NOISE_STD, size=num_examples)
    price[rng.random(num_examples) < MISSING_PRICE_LABEL_RATE] = np.nan
    return {"shape": shape, "premium": premium, "price": price.astype(np.float32)}


def _price(latents: dict[str, np.ndarray], weight_kg: np.ndarray) -> np.ndarray:
    """Noise-free price: 20 + shape bonus + 8*warm + material bonus + 6*weight (NaN -> median)."""
    weight = weight_kg.astype(np.float64)
    observed = weight[~np.isnan(weight)]
    fill_value = float(np.median(observed)) if observed.size else WEIGHT_MEDIAN_KG
    weight = np.where(np.isnan(weight), fill_value, weight)
    shape_bonus = np.array([SHAPE_PRICE_BONUS[s] for s in SHAPES])[latents["shape"]]
    material_bonus = np.array([MATERIAL_PRICE_BONUS[m] for m in MATERIALS])[latents["material"]]
    return 20.0 + shape_bonus + WARM_PRICE_BONUS * latents["warm"] + material_bonus + 6.0 * weight


def _names(vocabulary: tuple[str, ...], indices: np.ndarray) -> np.ndarray:
    """Map integer indices to an object array of Python str."""
    return np.array(vocabulary, dtype=object)[indices]


def _draw_images(
    rng: np.random.Generator, latents: dict[str, np.ndarray], image_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Render and PNG-encode every image; also return the shape area fractions."""
    num_examples = len(latents["shape"])
    images = np.empty(num_examples, dtype=object)
    area = np.empty(num_examples, dtype=np.float64)
    chunk = max(1, _PIXELS_PER_CHUNK // (image_size * image_size))
    for start in range(0, num_examples, chunk):
        rows = slice(start, min(start + chunk, num_examples))
        mask = _shape_masks(
            latents["shape"][rows],
            latents["extent"][rows],
            latents["centre_x"][rows],
            latents["centre_y"][rows],
            image_size,
        )
        pixels = _render_pixels(rng, mask, latents["colour"][rows])
        area[rows] = mask.mean(axis=(1, 2))
        for offset, image in enumerate(pixels):
            images[start + offset] = encode_png(image)
    return images, area


def _shape_masks(
    shape: np.ndarray,
    extent: np.ndarray,
    centre_x: np.ndarray,
    centre_y: np.ndarray,
    image_size: int,
) -> np.ndarray:
    """Boolean [N, S, S] masks of the filled shapes, evaluated at pixel centres.

    Coordinates are canvas fractions in [0, 1]; y grows downwards. The circle
    has diameter ``extent``, the square side ``extent``, and the triangle has
    its apex at the top centre and its base (width ``extent``) at the bottom
    of the ``extent`` x ``extent`` bounding box.
    """
    coords = (np.arange(image_size) + 0.5) / image_size
    x = coords[None, None, :]
    y = coords[None, :, None]
    half = (extent / 2.0)[:, None, None]
    dx = np.abs(x - centre_x[:, None, None])
    dy = y - centre_y[:, None, None]
    circle = dx**2 + dy**2 <= half**2
    square = (dx <= half) & (np.abs(dy) <= half)
    depth_from_apex = (dy + half) / (2.0 * half)  # 0 at apex, 1 at base
    triangle = (depth_from_apex >= 0.0) & (depth_from_apex <= 1.0) & (dx <= half * depth_from_apex)
    shape = shape[:, None, None]
    return np.where(
        shape == SHAPES.index("circle"),
        circle,
        np.where(shape == SHAPES.index("square"), square, triangle),
    )


def _render_pixels(rng: np.random.Generator, mask: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Paint noisy coloured shapes on noisy grey backgrounds: uint8 [N, S, S, 3]."""
    num_images = mask.shape[0]
    level = rng.uniform(*BACKGROUND_LEVEL_RANGE, size=(num_images, 1, 1, 1))
    tint = rng.uniform(-BACKGROUND_TINT, BACKGROUND_TINT, size=(num_images, 1, 1, 3))
    palette = np.array([COLOUR_RGB[c] for c in COLOURS], dtype=np.float64)
    jitter = rng.uniform(-SHAPE_COLOUR_JITTER, SHAPE_COLOUR_JITTER, size=(num_images, 3))
    shape_rgb = (palette[colour] + jitter)[:, None, None, :]
    noise = rng.standard_normal(size=(*mask.shape, 3), dtype=np.float32)
    inside = mask[..., None]
    base = np.where(inside, shape_rgb, level + tint).astype(np.float32)
    noise_std = np.where(inside, np.float32(SHAPE_NOISE_STD), np.float32(BACKGROUND_NOISE_STD))
    pixels = base + noise * noise_std
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
