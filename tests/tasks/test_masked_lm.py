"""The masked language model: its loss by hand, the masking's rate and determinism, targets = the text's ids."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mtmm.config.loading import config_from_dict
from keras_mtmm.errors import ConfigError
from keras_mtmm.layers.masking import TokenMasking, hash_uniform
from keras_mtmm.tasks import get_task_type
from keras_mtmm.tasks.base import class_table
from keras_mtmm.tasks.losses import MaskedTokenCrossentropy
from keras_mtmm.tasks.masked_lm import MASK_TOKEN


def test_the_loss_is_the_mean_cross_entropy_over_the_asked_and_labelled_positions():
    y_pred = np.zeros((1, 3, 4), np.float32)
    y_pred[0, 0] = [0.1, 0.6, 0.2, 0.1]  # asked, target 1
    y_pred[0, 2] = [0.25, 0.25, 0.4, 0.1]  # asked, target 2, but unlabelled (weight 0)
    targets = np.array([[1, 3, 2]])
    weights = np.array([[1.0, 1.0, 0.0]], np.float32)  # position 1 is labelled but was not asked (all 0)
    loss = MaskedTokenCrossentropy()(targets, y_pred, sample_weight=weights)
    assert float(loss) == pytest.approx(-np.log(0.6), rel=1e-5)
    nothing = MaskedTokenCrossentropy()(targets, np.zeros_like(y_pred), sample_weight=weights)
    assert float(nothing) == 0.0  # a batch with no hidden token adds nothing (and no NaN)
    # The count the mean is over (what weighs a replica's share, and says whether the task is in the batch).
    assert float(keras.ops.sum(MaskedTokenCrossentropy().weights_of(y_pred, weights))) == 1.0


def test_masking_hides_the_rate_of_the_tokens_at_random_in_training_and_by_the_text_otherwise():
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 50, size=(400, 16))
    ids[:, 12:] = 0  # padding
    ids[0, 3] = 60  # a word written [mask]
    layer = TokenMasking(0.15, mask_id=60, seed=1)
    masked, chosen = (np.asarray(x) for x in layer(ids, training=True))
    assert not chosen[:, 12:].any()  # never padding
    assert abs(chosen[:, :12].mean() - 0.15) < 0.02
    assert (masked[chosen > 0] == 60).all() and (masked[chosen == 0] == ids[chosen == 0]).all()
    again = np.asarray(layer(ids, training=True)[1])
    assert (again != chosen).any()  # a new draw each step
    fixed, same = (np.asarray(layer(ids)[1]) for _ in range(2))
    assert (fixed == same).all() and abs(fixed[:, :12].mean() - 0.15) < 0.02
    assert fixed[0, 3] == 1 and chosen[0, 3] == 1  # [mask] is always predicted
    u = np.asarray(hash_uniform(tf.constant(ids)))
    assert ((u >= 0) & (u < 1)).all() and abs(u.mean() - 0.5) < 0.02


def test_the_targets_are_the_ids_the_modality_vectorizer_gives():
    texts = ["Anna met tom in oslo", "tom met [mask]", "zebra", ""]
    vocabulary = ["met", "tom", "anna", "in", "oslo", MASK_TOKEN]
    vectorizer = keras.layers.TextVectorization(
        standardize="lower", output_sequence_length=6, vocabulary=vocabulary, name="v"
    )
    expected = np.asarray(vectorizer(tf.constant(texts)))
    classes = ["", "[UNK]", *vocabulary]
    task = get_task_type("masked_language_model", spec={"sequence_length": 6, "standardize": "lower"})
    targets, mask, unknown = task.encode_tf(tf.constant(texts), classes, class_table(classes), "|")
    np.testing.assert_array_equal(np.asarray(targets), expected)  # "zebra": out of vocabulary, id 1
    assert np.asarray(mask).tolist()[1] == [1, 1, 0, 0, 0, 0]  # [mask] itself is no target
    assert not np.asarray(unknown).any()


def lm_config(**task) -> dict:
    return {
        "name": "lm",
        "data": {"source": "sentences", "num_examples": 40},
        "modalities": {"sentence": {"type": "text", "columns": ["text"], "encoder": {"type": "transformer"}}},
        "tasks": {"words": {"type": "masked_language_model", "modality": "sentence", **task}},
    }


def test_its_label_is_its_text_column_and_a_rate_outside_0_1_is_an_error():
    assert config_from_dict(lm_config()).tasks["words"].label == "text"
    with pytest.raises(ConfigError, match=r"tasks\.words\.label.*own words, column 'text'"):
        config_from_dict(lm_config(label="tags"))
    with pytest.raises(ConfigError, match=r"tasks\.words\.mask_rate: expected a rate in \(0, 1\), got 1.0"):
        config_from_dict(lm_config(mask_rate=1.0))
