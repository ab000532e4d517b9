"""Default encoders learn every modality: a keyword, a shape, a sum of numbers, and left from right.

Each dataset has a known answer; each task must beat its label-prior
baseline (majority class, mean predictor) clearly, with the default
encoders and training settings, in each of three seeds.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.data.demo import _shape_masks, encode_png

FILLER = ("nice", "item", "fast", "shipping", "great", "value", "new", "stock", "best", "price", "quality", "deal")


def _pixels(rng, masks: list[np.ndarray]) -> np.ndarray:
    """Noisy grey background; each mask painted a random bright colour."""
    height, width = masks[0].shape
    image = rng.uniform(90, 140) + rng.normal(0, 12, size=(height, width, 3))
    for mask in masks:
        image[mask] = rng.uniform(170, 255, size=3) + rng.normal(0, 12, size=(int(mask.sum()), 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _mask(rng, shape: int, size: int) -> np.ndarray:
    extent = rng.uniform(0.6, 0.9, size=1)
    centre = rng.uniform(0.35, 0.65, size=2)
    return _shape_masks(np.array([shape]), extent, centre[:1], centre[1:], size)[0]


def _three_modalities_csv(folder, rows: int, seed: int):
    """`keyword` (binary: the word "gift" in the text), `shape` (multiclass, from the image), `total`
    (regression: 2·x1 − x2 + noise); x3 and the colour column are noise."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    path = folder / "items.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["picture", "text", "x1", "x2", "x3", "colour", "keyword", "shape", "total"])
        for row in range(rows):
            shape = int(rng.integers(3))
            name = f"images/{row}.png"
            (folder / name).write_bytes(encode_png(_pixels(rng, [_mask(rng, shape, 16)])))
            words = list(rng.choice(FILLER, size=int(rng.integers(4, 9))))
            keyword = bool(rng.random() < 0.5)
            if keyword:
                words.insert(int(rng.integers(len(words) + 1)), "gift")
            x1, x2, x3 = rng.normal(size=3)
            writer.writerow(
                [name, " ".join(words), f"{x1:.4f}", f"{x2:.4f}", f"{x3:.4f}", rng.choice(["red", "blue", "green"])]
                + [
                    ("no", "yes")[keyword],
                    ("circle", "square", "triangle")[shape],
                    f"{2 * x1 - x2 + rng.normal(0, 0.1):.4f}",
                ]
            )
    return path


def _left_right_csv(folder, rows: int, seed: int):
    """16×32 images, a circle in one half and a square in the other; `left`: which is on the left."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    path = folder / "pairs.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["picture", "left"])
        for row in range(rows):
            circle_left = bool(rng.random() < 0.5)
            halves = [_mask(rng, 0, 16), _mask(rng, 1, 16)]  # circle, square
            if not circle_left:
                halves.reverse()
            blank = np.zeros((16, 16), dtype=bool)
            masks = [np.concatenate([halves[0], blank], axis=1), np.concatenate([blank, halves[1]], axis=1)]
            name = f"images/{row}.png"
            (folder / name).write_bytes(encode_png(_pixels(rng, masks)))
            writer.writerow([name, "circle" if circle_left else "square"])
    return path


def _train(tmp_path, name: str, seed: int, path, modalities: dict, tasks: dict, epochs: int):
    """Train the default config (only types, columns and tasks given) on a CSV; its test metrics per task."""
    from keras_mtmm.training.run import train

    raw = {
        "name": f"{name}_{seed}",
        "seed": seed,
        "data": {"source": "csv", "path": str(path), "validation_fraction": 0.15, "test_fraction": 0.2},
        "modalities": modalities,
        "tasks": tasks,
        "training": {"epochs": epochs, "batch_size": 32},
    }
    return train(config_from_dict(raw), output_dir=tmp_path / "run", export=False, verbose=0).metrics["tasks"]


# Seed 0 in the default run (30-40 s each on 2 cores), the other two seeds with `pytest -m slow`.
SEEDS = [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)]


@pytest.mark.parametrize("seed", SEEDS)
def test_default_encoders_learn_text_image_and_numbers_in_every_seed(tmp_path, seed):
    path = _three_modalities_csv(tmp_path, 600, seed)
    modalities = {  # default encoders: only the types and columns are given
        "image": {"type": "image", "columns": ["picture"], "image_size": [16, 16]},
        "text": {"type": "text", "columns": ["text"], "sequence_length": 12},
        "numbers": {"type": "numeric", "columns": ["x1", "x2", "x3"]},
        "colour": {"type": "categorical", "columns": ["colour"]},
    }
    tasks = {
        "keyword": {"type": "binary", "label": "keyword", "classes": ["no", "yes"]},
        "shape": {"type": "multiclass", "label": "shape"},
        "total": {"type": "regression", "label": "total"},
    }
    # 390 training rows, 14 epochs: enough steps to learn the shapes
    tasks = _train(tmp_path, "three_modalities", seed, path, modalities, tasks, epochs=14)
    # label priors: keyword ~0.5 (majority), shape ~0.33, total: the mean predictor's MSE = Var ≈ 5.
    # keyword: seed 1 reaches 0.80 (test loss 0.49, still learning at epoch 14); the bar is the issue's:
    # clearly above the prior (0.5 + 6 standard errors on 120 test rows), not "solved in 14 epochs".
    assert tasks["keyword"]["accuracy"] >= 0.75, tasks
    assert tasks["shape"]["accuracy"] >= 0.75, tasks
    assert tasks["total"]["mae"] <= 0.6, tasks  # the mean predictor's MAE is ≈ 1.8


@pytest.mark.parametrize("seed", SEEDS)
def test_default_image_encoder_tells_left_from_right(tmp_path, seed):
    path = _left_right_csv(tmp_path, 500, seed)
    image = {"image": {"type": "image", "columns": ["picture"], "image_size": [16, 32]}}
    left = {"left": {"type": "binary", "label": "left", "classes": ["circle", "square"]}}
    tasks = _train(tmp_path, "left_right", seed, path, image, left, epochs=20)
    assert tasks["left"]["accuracy"] >= 0.95, tasks
