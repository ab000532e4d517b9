"""Training health: dead encoder units, modality contributions and label priors, against hand-made answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_mtmm.data.tables import load_splits
from keras_mtmm.evaluation.predictor import in_memory_predictor
from keras_mtmm.evaluation.scoring import score_batches
from keras_mtmm.export.saved_model import model_metadata
from keras_mtmm.training.health import (
    dead_units,
    health_warnings,
    label_prior_comparison,
    prior_predictions,
    probe_network,
    training_health,
)


@pytest.fixture(scope="module")
def damaged(tiny_config_factory, untrained_factory, tmp_path_factory):
    """The tiny demo network, untrained, with 10 text units and 5 numeric units made constant by hand,
    and then a copy of it whose whole text encoder is dead."""
    config = tiny_config_factory()
    network, preprocessor = untrained_factory(config, tmp_path_factory.mktemp("health"))
    text = network.get_layer("text_encoder").projection
    gamma = np.asarray(text.norm.gamma).copy()
    gamma[:10] = 0.0  # LayerNorm out = gamma·z + beta: constant beta on those units
    text.norm.gamma.assign(gamma)
    numeric = network.get_layer("numeric_encoder").projection.dense  # linear: zero columns give the bias
    kernel = np.asarray(numeric.kernel).copy()
    kernel[:, :5] = 0.0
    numeric.kernel.assign(kernel)
    metadata = model_metadata(config, preprocessor, {t: 1.0 for t in config.tasks})
    return config, network, preprocessor, metadata


def test_dead_units_count_exactly_the_units_made_constant(damaged):
    config, network, preprocessor, metadata = damaged
    table = load_splits(config)["validation"]
    predict = in_memory_predictor(probe_network(network), preprocessor)
    dead = dead_units(predict, metadata, table, batch_size=16)
    assert {m: (d["dead"], d["units"]) for m, d in dead.items()} == {
        "image": (0, 64),
        "text": (10, 32),
        "numeric": (5, 32),
        "categorical": (0, 32),
    }
    assert dead["text"]["dead_fraction"] == pytest.approx(10 / 32)
    assert health_warnings({"split": "validation", "dead_units": dead}) == []  # under half: no warning


def test_a_dead_encoder_is_warned_about_and_removing_it_changes_nothing(damaged):
    config, network, preprocessor, metadata = damaged
    text = network.get_layer("text_encoder").projection
    saved = np.asarray(text.norm.gamma).copy()
    text.norm.gamma.assign(np.zeros_like(saved))  # the whole text encoder: one constant vector
    try:
        splits = load_splits(config)
        predict = in_memory_predictor(probe_network(network), preprocessor)
        health = training_health(predict, splits, metadata, batch_size=16)
        table = {k: v[: health["rows"]] for k, v in splits["validation"].items()}
        plain = score_batches(predict, [table], metadata, "", "")["tasks"]  # every modality, the first rows
    finally:
        text.norm.gamma.assign(saved)
    assert health["dead_units"]["text"] == {"units": 32, "dead": 32, "dead_fraction": 1.0}
    warnings = [w for w in health["warnings"] if "modality" in w]
    assert warnings == [
        "warning: modality 'text': 32 of 32 encoder output units are dead on the validation split (constant on"
        " every row); lower training.learning_rate, check the 'text' columns, or try another"
        " modalities.text.encoder.type"
    ]
    for task, contribution in health["modality_contribution"].items():
        assert contribution["drop"]["text"] == 0.0, task  # a dead encoder gives every row the same vector
        assert contribution["all"] == pytest.approx(plain[task][contribution["metric"]])


def test_removing_a_modality_scores_as_a_client_leaving_it_out(damaged):
    config, network, preprocessor, metadata = damaged
    splits = load_splits(config)
    predict = in_memory_predictor(probe_network(network), preprocessor)
    health = training_health(predict, splits, metadata, batch_size=16)
    table = {k: v[: health["rows"]] for k, v in splits["validation"].items()}
    blank = {**table, "description": np.full(len(table["description"]), "", dtype=object)}  # no text at all
    without_text = score_batches(predict, [blank], metadata, "", "")["tasks"]
    for task, contribution in health["modality_contribution"].items():
        metric = contribution["metric"]
        assert contribution["without"]["text"] == pytest.approx(without_text[task][metric])
        sign = -1.0 if metric in ("mae", "rmse") else 1.0  # positive drop: the modality helps
        expected = sign * (contribution["all"] - without_text[task][metric])
        assert contribution["drop"]["text"] == pytest.approx(expected)


def test_label_priors_are_the_training_frequencies_and_mean():
    metadata = {
        "tasks": {
            "kind": {"type": "multiclass", "classes": ["a", "b", "c"]},
            "flag": {"type": "binary", "classes": ["no", "yes"]},
            "price": {"type": "regression"},
        }
    }
    targets = {
        "kind": np.array([0, 2, 2, 1, 2]),
        "flag": np.array([[1.0], [0.0], [1.0], [1.0], [0.0]]),
        "price": np.array([[2.0], [4.0], [0.0], [9.0], [6.0]]),
    }
    masks = {"kind": np.ones(5), "flag": np.ones(5), "price": np.array([1.0, 1.0, 0.0, 1.0, 1.0])}  # 0.0 unlabelled
    priors = prior_predictions(metadata, targets, masks, rows=2)
    np.testing.assert_allclose(priors["kind"], [[0.2, 0.2, 0.6]] * 2)
    np.testing.assert_allclose(priors["flag"], [[0.6]] * 2)
    np.testing.assert_allclose(priors["price"], [[5.25]] * 2)  # (2 + 4 + 9 + 6) / 4


def test_a_task_no_better_than_its_prior_is_warned_about_and_one_that_learned_is_not():
    metadata = {"tasks": {"kind": {"type": "multiclass", "classes": ["a", "b"]}, "y": {"type": "regression"}}}
    scores = {
        "kind": {"loss": 0.690, "accuracy": 0.52, "labelled": 100},  # the prior: 0.693, 0.51
        "y": {"loss": 0.20, "mae": 0.3, "labelled": 100},  # the prior: 1.0, 0.8
    }
    priors = {"kind": {"loss": 0.693, "accuracy": 0.51}, "y": {"loss": 1.0, "mae": 0.8}}
    comparison = label_prior_comparison(metadata, scores, priors)
    assert comparison["kind"]["learned"] is False and comparison["y"]["learned"] is True
    lines = health_warnings({"split": "validation", "label_prior": comparison})
    assert len(lines) == 1 and lines[0].startswith(
        "warning: task 'kind': validation loss 0.69 is no better than its label prior's 0.693"
    )
    # accuracy well above the majority class's is learning, even where the loss has not moved 2%
    scores["kind"]["accuracy"] = 0.61
    assert label_prior_comparison(metadata, scores, priors)["kind"]["learned"] is True
    # ... but not by what chance gives: late fusion on the demo's XOR, 0.535 over 0.495 on 400 rows
    # (two standard errors are 0.050)
    scores["kind"].update(loss=0.70, accuracy=0.535, labelled=400)
    priors["kind"].update(accuracy=0.495)
    assert label_prior_comparison(metadata, scores, priors)["kind"]["learned"] is False


def test_a_run_writes_its_health_into_inspection_json(tiny_run):
    health = json.loads((tiny_run.run_dir / "inspection.json").read_text())["health"]
    assert health["split"] == "validation" and health["rows"] > 0
    assert set(health["dead_units"]) == {"image", "text", "numeric", "categorical"}
    assert set(health["modality_contribution"]) == set(health["label_prior"]) == {"shape", "premium", "price"}
    for contribution in health["modality_contribution"].values():
        assert set(contribution["drop"]) == {"image", "text", "numeric", "categorical"}
