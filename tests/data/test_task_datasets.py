"""Tasks with datasets of their own: each task's loss sees only its examples; samplers set the mix."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.data.tables import StreamSplit, load_splits

ROWS = {"a": 300, "b": 100}


def _write(path, source: str, rows: int, label: str, seed: int):
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x1", "x2", "source", label])
        for _ in range(rows):
            x1, x2 = rng.normal(size=2)
            value = f"{2 * x1 + rng.normal(scale=0.1):.4f}" if label == "y" else ("hi" if x2 > 0 else "lo")
            writer.writerow([f"{x1:.4f}", f"{x2:.4f}", source, value])


def _raw(folder, mixing="joint", sampler="proportional", **data):
    _write(folder / "a.csv", "A", ROWS["a"], "y", 1)
    _write(folder / "b.csv", "B", ROWS["b"], "klass", 2)
    return {
        "name": "two_datasets",
        "seed": 3,
        "data": {"source": "csv", "path": str(folder / "a.csv"), "mixing": mixing, "sampler": sampler, **data},
        "modalities": {
            "numbers": {"type": "numeric", "columns": ["x1", "x2"]},
            "origin": {"type": "categorical", "columns": ["source"]},
        },
        "sharing": {"shared_units": [8], "tower_units": [4]},
        "tasks": {
            "a": {"type": "regression", "label": "y"},
            "b": {
                "type": "binary",
                "label": "klass",
                "classes": ["lo", "hi"],
                "data": {"source": "csv", "path": str(folder / "b.csv")},
            },
        },
        "training": {"epochs": 2, "batch_size": 16},
    }


def _batches(config, tmp_path, steps=150):
    from keras_mtmm.data.pipeline import make_mixed_dataset
    from keras_mtmm.data.sampling import build_sampler
    from keras_mtmm.preprocessing.preprocessor import Preprocessor
    from keras_mtmm.training.run_guards import adapt_preprocessor

    splits = load_splits(config)
    assert isinstance(splits["train"], StreamSplit)
    preprocessor = Preprocessor.from_settings(config)
    counts = adapt_preprocessor(preprocessor, config, splits["train"], tmp_path / "pre")
    sampler = build_sampler(config.data.sampler, config.data.temperature)
    dataset, schedule = make_mixed_dataset(
        preprocessor, splits["train"], 16, config.data.mixing, sampler, 1, steps, seed=config.seed
    )
    origin_a = preprocessor.preprocessing_layers("origin")[0](np.array(["A"])).numpy()[0]
    return [batch for batch in dataset.take(steps)], origin_a, counts, schedule, splits


@pytest.mark.parametrize("mixing", ["joint", "interleaved"])
def test_each_task_loss_sees_only_its_own_dataset(tmp_path, mixing):
    config = config_from_dict(_raw(tmp_path, mixing=mixing))
    batches, origin_a, counts, _, splits = _batches(config, tmp_path)
    train_rows = {name: len(part["y" if "data" == name else "klass"]) for name, part in splits["train"].parts.items()}
    assert counts == {"a": train_rows["data"], "b": train_rows["tasks.b.data"]}
    seen_a = seen_b = 0
    for x, _, w in batches:
        from_a = np.asarray(x["origin"])[:, 0] == origin_a
        np.testing.assert_array_equal(np.asarray(w["a"]), from_a.astype(np.float32))  # a's loss: A's rows only
        np.testing.assert_array_equal(np.asarray(w["b"]), (~from_a).astype(np.float32))  # b's loss: B's rows only
        if mixing == "interleaved":
            assert from_a.all() or (~from_a).all(), "an interleaved batch comes from one dataset"
        seen_a += int(from_a.sum())
        seen_b += int((~from_a).sum())
    assert seen_a and seen_b


@pytest.mark.parametrize(
    "sampler, extra, expected_a",
    [("proportional", {}, 0.75), ("uniform", {}, 0.5), ("temperature", {"temperature": 2.0}, None)],
)
def test_sampler_frequencies_match_the_configured_strategy(tmp_path, sampler, extra, expected_a):
    config = config_from_dict(_raw(tmp_path, sampler=sampler, **extra))
    batches, origin_a, _, schedule, splits = _batches(config, tmp_path, steps=200)
    sizes = [len(part["x1"]) for part in splits["train"].parts.values()]
    if expected_a is None:  # p ∝ n^(1/τ)
        roots = np.sqrt(sizes)
        expected_a = roots[0] / roots.sum()
    else:
        expected_a = expected_a if sampler == "uniform" else sizes[0] / sum(sizes)
    assert schedule[0]["data"] == pytest.approx(expected_a)
    drawn = np.concatenate([np.asarray(x["origin"])[:, 0] == origin_a for x, _, _ in batches])
    standard_error = np.sqrt(expected_a * (1 - expected_a) / len(drawn))
    assert abs(drawn.mean() - expected_a) < 4 * standard_error


def test_training_and_evaluation_with_two_datasets(tmp_path):
    from keras_mtmm.evaluation.evaluate import evaluate_model
    from keras_mtmm.training.run import train

    config = config_from_dict(_raw(tmp_path, mixing="interleaved", sampler="annealed"))
    result = train(config, output_dir=tmp_path / "run", export_dir=tmp_path / "models", verbose=0)
    metadata = json.loads((result.run_dir / "metadata.json").read_text())
    sampling = metadata["sampling"]
    assert sampling["mixing"] == "interleaved" and sampling["sampler"] == "annealed"
    assert sampling["probabilities"][0]["data"] == pytest.approx(0.75)  # proportional first ...
    assert sampling["probabilities"][-1]["data"] == pytest.approx(0.5)  # ... uniform at the last epoch
    tasks = result.metrics["tasks"]
    splits = load_splits(config)
    test_parts = splits["test"].parts
    assert tasks["a"]["labelled"] == int(np.isfinite(test_parts["data"]["y"].astype(float)).sum())
    assert tasks["b"]["labelled"] == len(test_parts["tasks.b.data"]["klass"])
    report = evaluate_model(result.export_path, quiet=True)
    for task in ("a", "b"):
        assert report["tasks"][task] == pytest.approx(tasks[task])


def test_a_label_column_shared_by_two_datasets_is_refused(tmp_path):
    from keras_mtmm.errors import ConfigError

    raw = _raw(tmp_path)
    raw["tasks"]["b"]["label"] = "y"
    with pytest.raises(ConfigError, match="read from two datasets"):
        config_from_dict(raw)
    raw = _raw(tmp_path)
    raw["tasks"]["b"]["data"]["sampler"] = "uniform"
    with pytest.raises(ConfigError, match="top-level data only"):
        config_from_dict(raw)


@pytest.mark.parametrize("global_seed", [0, 2**31 - 1, 12345])
@pytest.mark.parametrize("mixing", ["joint", "interleaved"])
def test_the_mixed_stream_ignores_the_global_seed(tmp_path, mixing, global_seed):
    """Regression: after `keras.utils.set_random_seed(0)` (as `train` does for `seed: 0`, and many tests
    do), building a repeated stream failed in `flat_map` (TF read the per-pass seed tensor as a bool);
    under other global seeds the order followed the caller's seed. Now it is a function of the config."""
    import keras
    import tensorflow as tf

    config = config_from_dict(_raw(tmp_path, mixing=mixing))
    tf.random.set_seed(None)
    reference, *_ = _batches(config, tmp_path / "reference", steps=6)
    keras.utils.set_random_seed(global_seed)
    batches, *_ = _batches(config, tmp_path / "seeded", steps=6)
    for (x, y, w), (x0, y0, w0) in zip(batches, reference, strict=True):
        for got, want in ((x, x0), (y, y0), (w, w0)):
            assert got.keys() == want.keys()
            for key in got:
                np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]))
