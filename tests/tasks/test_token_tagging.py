"""Token tagging: BIO entities and entity F1 against hand-counted values, the tag encoding, its checks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.errors import ConfigError, DataError
from keras_mtmm.preprocessing.labels import encode_labels_tf, encode_table_labels
from keras_mtmm.tasks import get_task_type
from keras_mtmm.tasks.base import class_table
from keras_mtmm.tasks.scores import bio_entities, entity_f1

TAGS = ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"]


def test_bio_entities_read_as_conlleval_reads_them():
    assert bio_entities("B-PER I-PER O B-LOC".split()) == {(0, 2, "PER"), (3, 4, "LOC")}
    # I- after O or another type starts an entity; B- after B- of the same type is a new one.
    assert bio_entities("O I-PER I-PER B-LOC I-PER".split()) == {(1, 3, "PER"), (3, 4, "LOC"), (4, 5, "PER")}
    assert bio_entities("B-PER B-PER".split()) == {(0, 1, "PER"), (1, 2, "PER")}
    assert bio_entities(["B-PER", "", "I-PER"]) == {(0, 1, "PER"), (2, 3, "PER")}  # padding ends an entity
    assert bio_entities("O O".split()) == set()


def test_entity_f1_counts_exact_spans_and_types():
    truth = ["B-PER I-PER O B-LOC".split(), "B-ORG O".split()]  # 3 entities
    predicted = ["B-PER O O B-LOC".split(), "B-ORG O".split()]  # 3 predicted, 2 right: PER's span is short
    assert entity_f1(truth, predicted) == pytest.approx(2 * 2 / (3 + 3))
    wrong_type = [["B-LOC", "I-LOC", "O", "B-LOC"], ["O", "O"]]  # 1 right of 2 predicted
    assert entity_f1(truth, wrong_type) == pytest.approx(2 * 1 / (3 + 2))
    assert entity_f1([["O"]], [["O"]]) == 1.0  # nothing to find, nothing found


def encoded(cells, length=4):
    task = get_task_type("token_tagging", spec={"sequence_length": length})
    raw = tf.constant(cells)
    return task.encode_tf(raw, TAGS, class_table(TAGS), "|")


def test_tags_become_targets_and_a_mask_per_position_cut_at_the_sequence_length():
    targets, mask, unknown = encoded(["B-PER I-PER O", "", "O O O B-LOC I-LOC"])
    assert targets.numpy().tolist() == [[1, 3, 4, 0], [0, 0, 0, 0], [4, 4, 4, 0]]
    assert mask.numpy().tolist() == [[1, 1, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]]  # the fifth tag is past L = 4
    assert not unknown.numpy().any()
    _, _, unknown = encoded(["B-PER B-XX", "O"])
    assert unknown.numpy().tolist() == [True, False]


def test_scores_over_the_labelled_tokens_and_rows():
    task = get_task_type("token_tagging", spec={"sequence_length": 3})
    targets = np.array([[1, 3, 4], [0, 0, 0]])  # B-PER I-PER O | unlabelled
    mask = np.array([[1, 1, 1], [0, 0, 0]], dtype=np.float32)
    predictions = np.zeros((2, 3, 5), np.float32)
    predictions[0, [0, 1, 2], [1, 4, 4]] = [0.8, 0.6, 0.9]  # B-PER O O: 2 of 3 tokens, the entity cut short
    predictions[0, [0, 1, 2], [0, 3, 0]] = [0.2, 0.4, 0.1]
    predictions[1, :, 4] = 1.0
    count, scores = task.labelled_scores(predictions, targets, mask, ["entity_f1", "token_accuracy"], {"classes": TAGS})
    assert count == 1
    assert scores["token_accuracy"] == pytest.approx(2 / 3)
    assert scores["entity_f1"] == 0.0  # one entity expected, one predicted, not the same span
    assert scores["loss"] == pytest.approx(-np.mean(np.log([0.8, 0.4, 0.9])), rel=1e-5)


def tagging_config(**overrides) -> dict:
    config = {
        "name": "tags",
        "data": {"source": "sentences", "num_examples": 40},
        "modalities": {"sentence": {"type": "text", "columns": ["text"], "encoder": {"type": "transformer"}}},
        "tasks": {"entities": {"type": "token_tagging", "label": "tags", "modality": "sentence"}},
    }
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if name:
            config[section] = {**config[section], name: value}
        else:
            config[section] = value
    return config


@pytest.mark.parametrize(
    ("overrides", "where", "what"),
    [
        (
            {"tasks": {"entities": {"type": "token_tagging", "label": "tags"}}},
            r"tasks\.entities\.modality",
            "no modality is named",
        ),
        (
            {
                "modalities": {
                    "sentence": {"type": "text", "columns": ["text"], "encoder": {"type": "hub", "handle": "HUB"}}
                }
            },
            r"modalities\.sentence\.encoder\.type",
            "no feature per token",
        ),
        (
            {
                "modalities": {
                    "sentence": {"type": "text", "columns": ["text"], "text": {"standardize": "strip_punctuation"}}
                }
            },
            r"modalities\.sentence\.standardize",
            "can drop a whole word",
        ),
        ({"fusion": {"strategy": "late"}}, r"fusion\.strategy", "one prediction per modality"),
        (
            {"tasks": {"mood": {"type": "binary", "label": "sentiment", "modality": "sentence"}}},
            r"tasks\.mood\.modality",
            "reads every modality",
        ),
    ],
)
def test_a_token_task_that_cannot_read_tokens_is_a_config_error(overrides, where, what, tmp_path):
    from keras_mtmm.config.checks import validate_config

    (tmp_path / "saved_model.pb").write_bytes(b"")  # a hub module folder, as far as the checks look
    overrides = copy.deepcopy(overrides)  # (the parameters stay as they are for another run)
    encoder = overrides.get("modalities", {}).get("sentence", {}).get("encoder", {})
    if encoder.get("handle") == "HUB":
        encoder["handle"] = str(tmp_path)
    with pytest.raises(ConfigError, match=rf"{where}.*{what}"):
        validate_config(config_from_dict(tagging_config(**overrides)), check_files=False)


def spec(length=8):
    return {"type": "token_tagging", "label": "tags", "sequence_length": length, "text_column": "text"}


def test_a_row_whose_tags_are_not_one_per_word_is_named():
    table = {"text": np.array(["anna met tom", "in oslo"], object), "tags": np.array(["B-PER O B-PER", "O"], object)}
    with pytest.raises(DataError, match=r"row 1.*1 tag for 2 words"):
        encode_table_labels(table, {"entities": spec()}, {"entities": TAGS}, "|")
    columns = {name: tf.constant(values.tolist()) for name, values in table.items()}
    with pytest.raises(tf.errors.InvalidArgumentError, match="not one per word"):
        encode_labels_tf(columns, {"entities": spec()}, {"entities": TAGS}, {"entities": class_table(TAGS)}, "|")


def test_an_unlabelled_row_is_masked_whatever_its_text():
    table = {"text": np.array(["anna met tom", "in oslo"], object), "tags": np.array(["B-PER O B-PER", ""], object)}
    targets, masks = encode_table_labels(table, {"entities": spec(4)}, {"entities": TAGS}, "|")
    assert targets["entities"].shape == (2, 4)
    assert masks["entities"].tolist() == [[1, 1, 1, 0], [0, 0, 0, 0]]
