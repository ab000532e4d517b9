"""TFRecord shards of token tasks and ranked tasks: tags per word encode in TF as in NumPy, the group column
is in the shards, and a shard row whose tags are not one per word stops the pipeline naming the task."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.data.pipeline import data_errors
from keras_mtmm.data.sentences import generate_sentences
from keras_mtmm.data.tables import load_splits
from keras_mtmm.data.tfrecord import prepare, read_schema
from keras_mtmm.errors import DataError
from keras_mtmm.preprocessing.preprocessor import Preprocessor


def write_sentences(path, rows: int, seed: int = 0, bad_row: int | None = None):
    table = generate_sentences(rows, seed)
    writers = np.random.default_rng(seed).integers(0, 6, rows)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["text", "tags", "sentiment", "writer"])
        for i, (text, tags, sentiment) in enumerate(zip(table["text"], table["tags"], table["sentiment"])):
            out.writerow([text, tags if i != bad_row else tags + " O", sentiment, f"w{writers[i]}"])
    return path


def raw_config(path) -> dict:
    return {
        "name": "records",
        "data": {"source": "csv", "path": str(path), "validation_fraction": 0.2, "test_fraction": 0.2},
        "modalities": {
            "sentence": {
                "type": "text",
                "columns": ["text"],
                "encoder": {"type": "bag"},
                "text": {"sequence_length": 8},
            }
        },
        "tasks": {
            "entities": {"type": "token_tagging", "label": "tags", "modality": "sentence"},
            "sentiment": {"type": "binary", "label": "sentiment", "group": "writer"},
        },
    }


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("records")
    raw = raw_config(write_sentences(folder / "sentences.csv", 80))
    return folder, raw, prepare(config_from_dict(raw), folder / "shards", shards=2)


def test_tags_per_word_from_the_shards_encode_as_from_the_csv_and_the_group_column_is_kept(prepared):
    folder, raw, out = prepared
    assert read_schema(out, "data.path")["columns"]["writer"] == {"kind": "label", "dtype": "bytes"}
    config = config_from_dict(raw)
    table = load_splits(config)["train"]
    preprocessor = Preprocessor.from_settings(config)
    preprocessor.adapt(table, folder / "adapted")
    targets, masks = preprocessor.encode_labels(table)
    assert targets["entities"].shape == (len(table["text"]), 8)
    records = config_from_dict({**raw, "data": {"source": "tfrecord", "path": str(out)}})
    split = load_splits(records)["train"]
    columns = split.parse(tf.stack(list(split.records())))
    assert [v.decode() for v in columns["writer"].numpy()] == list(table["writer"])
    tf_targets, tf_masks = preprocessor.encode_labels_tf(columns)
    for task in config.tasks:
        np.testing.assert_array_equal(tf_targets[task].numpy(), targets[task], err_msg=task)
        np.testing.assert_array_equal(tf_masks[task].numpy(), masks[task], err_msg=task)


def test_prepare_names_a_row_whose_tags_are_not_one_per_word_and_the_pipeline_stops_on_one(tmp_path):
    bad = raw_config(write_sentences(tmp_path / "bad.csv", 40, seed=1, bad_row=3))
    with pytest.raises(DataError, match=r"bad\.csv:5: column 'tags': \d+ tags for \d+ words"):
        prepare(config_from_dict(bad), tmp_path / "shards", shards=1)
    assert not (tmp_path / "shards").exists()  # nothing half written
    good = raw_config(write_sentences(tmp_path / "good.csv", 40, seed=1))
    preprocessor = Preprocessor.from_settings(config_from_dict(good))
    preprocessor.adapt(load_splits(config_from_dict(good))["train"], tmp_path / "adapted")
    columns = {  # a batch as streamed shards give it, its second row misaligned
        "text": tf.constant(["anna met tom", "in oslo"]),
        "tags": tf.constant(["B-PER O B-PER", "O"]),
        "sentiment": tf.constant(["positive", "negative"]),
        "writer": tf.constant(["w1", "w2"]),
    }
    with pytest.raises(DataError, match=r"tasks\.entities\.label.*not one per word.*give one tag per word"):
        with data_errors():
            preprocessor.encode_labels_tf(columns)


def test_a_language_model_prepares_and_counts_its_texts(tmp_path):
    raw = raw_config(write_sentences(tmp_path / "lm.csv", 40, seed=2))
    raw["modalities"]["sentence"]["encoder"] = {"type": "transformer"}
    raw["tasks"] = {"words": {"type": "masked_language_model", "modality": "sentence"}}
    out = prepare(config_from_dict(raw), tmp_path / "shards", shards=1)
    entry = read_schema(out, "data.path")["tasks"]["words"]
    assert entry["classes"] == [] and sum(entry["labelled"].values()) == 40  # (its vocabulary: learnt at adapt)
