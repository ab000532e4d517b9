"""Categorical columns at recommendation scale: hashed ids (no vocabulary) and multi-valued, pooled columns."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.layers.encoders.tabular import CategoricalEmbeddingEncoder
from keras_mtmm.preprocessing.preprocessor import Preprocessor

HASHED = {"type": "categorical", "columns": ["user"], "max_tokens": 10, "hash_buckets": 1000}
HISTORY = {"type": "categorical", "columns": ["items"], "max_tokens": 10, "multi_valued": True, "max_values": 3}
TASKS = {"y": {"type": "binary", "label": "y", "classes": None}}


def adapted(spec, table, tmp_path):
    preprocessor = Preprocessor({"m": {"separator": "|", **spec}}, TASKS)
    preprocessor.adapt(table, tmp_path / "pre")
    return preprocessor


def test_hashed_ids_need_no_vocabulary_and_take_ids_never_seen(tmp_path):
    table = {"user": np.array(["u1", "u2", "", "u1"], dtype=object), "y": np.array(["a", "b", "a", "b"], dtype=object)}
    preprocessor = adapted(HASHED, table, tmp_path)
    assert "m" not in preprocessor.state["categorical"]  # nothing counted, nothing learnt
    assert preprocessor.vocabulary_sizes("m") == [1001]
    ids = preprocessor.transform({"m": tf.constant([["u1"], ["u2"], [""], ["u1"], ["never seen"]])})["m"].numpy()
    assert ids[2, 0] == 0 and ids[0, 0] == ids[3, 0] and ids[0, 0] != ids[1, 0]  # "" is missing; same id, same index
    assert ((ids[[0, 1, 3, 4], 0] >= 1) & (ids[[0, 1, 3, 4], 0] <= 1000)).all()
    expected = keras.layers.Hashing(num_bins=1000)(tf.constant(["u1", "u2", "never seen"])).numpy() + 1
    np.testing.assert_array_equal(ids[[0, 1, 4], 0], expected)  # FarmHash buckets, as TF Serving computes them


def test_multi_valued_cells_become_padded_index_lists_and_their_values_the_vocabulary(tmp_path):
    table = {
        "items": np.array(["a|b|c|d", "b", "", "b | a"], dtype=object),
        "y": np.array(["a", "b", "a", "b"], dtype=object),
    }
    preprocessor = adapted(HISTORY, table, tmp_path)
    vocabulary = ["b", "a", "c"]  # counted over the first max_values values of each cell: b x3, a x2, c x1
    ids = preprocessor.transform(preprocessor.raw_inputs(table))["m"].numpy()
    assert ids.shape == (4, 1, 3)
    index = {value: 2 + i for i, value in enumerate(vocabulary)}  # 0 padding / missing, 1 out of vocabulary
    np.testing.assert_array_equal(
        ids[:, 0], [[index["a"], index["b"], index["c"]], [index["b"], 0, 0], [0, 0, 0], [index["b"], index["a"], 0]]
    )
    presence = preprocessor.presence(preprocessor.raw_inputs(table)).numpy()
    np.testing.assert_array_equal(presence[:, 0], [1, 1, 0, 1])


@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_the_embedding_encoder_pools_the_values_it_is_given(pooling):
    encoder = CategoricalEmbeddingEncoder([6], embedding_dim=4, units=3, pooling=pooling)
    ids = np.array([[[2, 3, 0]], [[0, 0, 0]], [[5, 5, 4]]])
    encoder(ids)
    table = encoder.embeddings[0].embeddings.numpy()
    pooled = [table[[2, 3]].sum(0), np.zeros(4), table[[5, 5, 4]].sum(0)]
    if pooling == "mean":
        pooled = [pooled[0] / 2, pooled[1], pooled[2] / 3]
    kernel, bias = (weight.numpy() for weight in encoder.projection.weights[:2])
    np.testing.assert_allclose(encoder(ids).numpy(), np.stack(pooled) @ kernel + bias, atol=1e-5)
    assert CategoricalEmbeddingEncoder.from_config(encoder.get_config()).pooling == pooling


def recommendation_table(rows: int, seed: int) -> dict[str, np.ndarray]:
    """Impressions of `rows` distinct users (ids from a space of 10^9): clicked iff the recent items hold
    one of the first 20 of 200 items (the history decides; the id only adds a huge, useless column)."""
    rng = np.random.default_rng(seed)
    users = rng.choice(10**9, size=rows, replace=False)
    histories = [rng.choice(200, size=int(rng.integers(1, 6)), replace=False) for _ in range(rows)]
    return {
        "user": np.array([f"user_{u}" for u in users], dtype=object),
        "items": np.array(["|".join(f"item_{i}" for i in h) for h in histories], dtype=object),
        "clicked": np.array(["yes" if (h < 20).any() else "no" for h in histories], dtype=object),
    }


def recommendation_config(rows: int) -> dict:
    return {
        "name": "ids",
        "data": {"source": "memory", "validation_fraction": 0.1, "test_fraction": 0.1},
        "modalities": {
            "user": {"type": "categorical", "columns": ["user"], "hash_buckets": 2**18, "encoder": {"units": 8}},
            "history": {
                "type": "categorical",
                "columns": ["items"],
                "multi_valued": True,
                "max_values": 8,
                "encoder": {"units": 16, "embedding": {"pooling": "sum"}},
            },
        },
        "tasks": {"clicked": {"type": "binary", "label": "clicked"}},
        "sharing": {"type": "hard", "shared_units": [16], "tower_units": [8]},
        "training": {"epochs": 3, "batch_size": 256 if rows < 10**5 else 4096, "learning_rate": 0.01},
    }


def train_recommendation(tmp_path, rows: int):
    from keras_mtmm.training.run import train

    config = config_from_dict(recommendation_config(rows))
    table = recommendation_table(rows, seed=0)
    return train(config, output_dir=tmp_path / "run", export_dir=tmp_path / "models", verbose=0, data=table)


def test_hashed_ids_and_a_pooled_history_train_and_export(tmp_path):
    result = train_recommendation(tmp_path, 10_000)
    assert result.metrics["tasks"]["clicked"]["auc"] >= 0.9  # the history's rule, learnt through pooling
    serving = tf.saved_model.load(str(result.export_path)).signatures["serving_default"]
    outputs = serving(
        user=tf.constant([["user_never_seen"], [""]]), history=tf.constant([["item_3|item_150"], ["item_150"]])
    )
    p = outputs["clicked"].numpy()[:, 0]
    assert p[0] > 0.5 > p[1]  # item_3 is one of the 20 that make a click


@pytest.mark.slow
def test_a_million_distinct_ids_train_without_a_vocabulary_pass(tmp_path):
    result = train_recommendation(tmp_path, 10**6)
    assert result.metrics["tasks"]["clicked"]["auc"] >= 0.9 and result.export_path.exists()
