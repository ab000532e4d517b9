"""NLP multi-task on one Transformer: a masked language model, entity tags per word and the sentence's
sentiment are learnt; the export takes raw sentences and serves one tag per word ("" past the text's end)
and the hidden words, as the model in memory."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.data.sentences import generate_sentences
from keras_mtmm.data.tables import load_splits


def nlp_config(seed: int = 0, num_examples: int = 800, epochs: int = 10) -> dict:
    return {
        "name": "nlp",
        "seed": seed,
        "data": {"source": "sentences", "num_examples": num_examples, "validation_fraction": 0.2, "test_fraction": 0.2},
        "modalities": {
            "sentence": {
                "type": "text",
                "columns": ["text"],
                "text": {"max_tokens": 200, "sequence_length": 16},
                "encoder": {"type": "transformer", "units": 32},
            }
        },
        "sharing": {"type": "hard", "tower_units": [16]},
        "tasks": {
            "words": {"type": "masked_language_model", "modality": "sentence", "weight": 0.5},  # no label column
            "entities": {"type": "token_tagging", "label": "tags", "modality": "sentence"},
            "sentiment": {"type": "binary", "label": "sentiment"},
        },
        "training": {"epochs": epochs, "batch_size": 32, "learning_rate": 0.003},
    }


@pytest.fixture(scope="module")
def nlp_run(tmp_path_factory):
    from keras_mtmm.training.run import train

    root = tmp_path_factory.mktemp("nlp")
    config = config_from_dict(nlp_config())
    return config, train(config, output_dir=root / "run", export_dir=root / "saved_models", verbose=0)


def test_the_sentences_tag_every_word_and_some_names_are_people_and_places():
    table = generate_sentences(300, seed=3)
    for text, tags in zip(table["text"], table["tags"]):
        assert len(text.split()) == len(tags.split()) <= 16
    pairs = {(w, t) for text, tags in zip(table["text"], table["tags"]) for w, t in zip(text.split(), tags.split())}
    assert {("jordan", "B-PER"), ("jordan", "B-LOC")} <= pairs  # the tag of such a name is in its context


def test_entities_and_sentiment_are_learnt(nlp_run):
    _, result = nlp_run
    tasks = result.metrics["tasks"]
    assert tasks["entities"]["entity_f1"] >= 0.9, tasks["entities"]
    assert tasks["entities"]["token_accuracy"] >= 0.95, tasks["entities"]
    assert tasks["sentiment"]["auc"] >= 0.8, tasks["sentiment"]  # (the label prior: 0.5)
    health = json.loads((result.run_dir / "inspection.json").read_text())["health"]
    prior = health["label_prior"]["words"]["prior"]["masked_accuracy"]  # the most frequent word's rate
    assert tasks["words"]["masked_accuracy"] >= 2 * prior, (tasks["words"], prior)


def test_the_export_serves_one_tag_per_word_as_the_model_in_memory(nlp_run):
    config, result = nlp_run
    texts = load_splits(config)["test"]["text"][:16]
    signatures = tf.saved_model.load(str(result.export_path)).signatures
    served = signatures["predict_entities"](sentence=tf.constant(list(texts)))
    in_memory = result.model(result.preprocessor.transform({"sentence": tf.constant(list(texts))}))
    np.testing.assert_allclose(served["entities"].numpy(), np.asarray(in_memory["entities"]), atol=1e-5)
    words = signatures["predict_words"](sentence=tf.constant(list(texts)))["words"].numpy()
    np.testing.assert_allclose(words, np.asarray(in_memory["words"]), atol=1e-5)  # the same hidden positions
    tags = served["entities_label"].numpy()
    assert tags.shape == (16, 16)
    for text, row in zip(texts, tags):
        words = len(text.split())
        assert all(tag for tag in row[:words]) and not any(row[words:])  # "" at padding, a tag per word
    classes = result.preprocessor.classes("entities")
    named = [classes[i] for i in served["entities"].numpy()[0, : len(texts[0].split())].argmax(axis=-1)]
    assert [tag.decode() for tag in tags[0, : len(named)]] == named
    empty = signatures["predict_entities"](sentence=tf.constant([""]))
    assert not empty["entities"].numpy().any() and not any(empty["entities_label"].numpy()[0])


def test_a_word_written_mask_is_predicted_and_the_others_are_kept(nlp_run):
    _, result = nlp_run
    signatures = tf.saved_model.load(str(result.export_path)).signatures
    served = signatures["predict_words"](sentence=tf.constant(["anna met tom in [mask] it was great"]))
    labels = served["words_label"].numpy()[0]
    assert labels[4]  # the [mask] word gets a guess
    asked = served["words"].numpy()[0].sum(axis=-1) > 0
    assert asked[4] and not asked[8:].any()  # and padding none


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_entities_are_learnt_in_every_seed(tmp_path, seed):
    from keras_mtmm.training.run import train

    config = config_from_dict(nlp_config(seed=seed))
    result = train(config, output_dir=tmp_path / "run", export=False, verbose=0)
    tasks = result.metrics["tasks"]
    assert tasks["entities"]["entity_f1"] >= 0.9 and tasks["sentiment"]["auc"] >= 0.8, tasks


@pytest.mark.slow
def test_the_nlp_example_reaches_the_readme_figures(tmp_path):
    """configs/nlp_multitask.yaml as the README reports it (entity F1 0.996, masked accuracy 0.384, sentiment 1.0)."""
    from keras_mtmm.config.loading import load_config
    from keras_mtmm.training.run import train
    from tests.conftest import REPO_ROOT

    config = load_config(REPO_ROOT / "configs" / "nlp_multitask.yaml")
    tasks = train(config, output_dir=tmp_path / "run", export=False, verbose=0).metrics["tasks"]
    assert tasks["entities"]["entity_f1"] >= 0.99 and tasks["sentiment"]["accuracy"] >= 0.99, tasks
    assert tasks["words"]["masked_accuracy"] >= 0.3, tasks["words"]  # (label prior: 0.10)
