"""The masked language model: an auxiliary task that predicts a text modality's hidden tokens (BERT's MLM).

`tasks.<t>: {type: masked_language_model, modality: <text modality>, mask_rate: 0.15}` needs no label
column: its targets are the text's own token ids (its `label` is the text column). In training, a
random `mask_rate` of each text's tokens is replaced by the `[mask]` token (added to the modality's
vocabulary) in a second pass of the shared encoder, and the head predicts the vocabulary at those
positions only; the other tasks read the text unmasked. Outside training (validation, evaluation,
serving) the positions are chosen by a hash of the text's ids, the same each time, so that validation
scores the same positions every epoch and an export scores as the model in memory; a word written
`[mask]` is always predicted. (Unlike BERT's 80/10/10 rule, a chosen token is always replaced.)

The head's output is 0 at every position it was not asked to predict: the loss (`MaskedTokenCrossentropy`),
the scores and the served `<t>_label` (the predicted word, "" elsewhere) read the positions from it.
Score: `masked_accuracy`, and the loss (the mean cross-entropy over the predicted positions: its
exponential is the perplexity).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_mtmm.errors import DataError
from keras_mtmm.registry import TASK_TYPES
from keras_mtmm.tasks.base import labelled_row_mask
from keras_mtmm.tasks.losses import MaskedTokenCrossentropy
from keras_mtmm.tasks.token_tagging import TokenTaggingTask, words

MASK_TOKEN = "[mask]"  # the vocabulary's token for a hidden word (a text may hold it: it is predicted)
OOV_ID = 1  # TextVectorization's index for a word outside the vocabulary (0: padding)


@TASK_TYPES.register("masked_language_model")
class MaskedLanguageModelTask(TokenTaggingTask):
    """Predict the tokens of a text modality hidden behind `[mask]`; the classes are its vocabulary."""

    name = "masked_language_model"
    metric_names = ("masked_accuracy",)
    default_metrics = ("masked_accuracy",)
    settings = ("sequence_length", "standardize")
    numpy_metrics = ("masked_accuracy",)
    needs_label = False
    reads_vocabulary = True  # its classes are the text modality's vocabulary (index = token id)

    def __init__(self, sequence_length: int | None = None, standardize: str | None = "lower"):
        super().__init__(sequence_length)
        self.standardize = standardize

    def loss(self, target_scale=1.0):
        return MaskedTokenCrossentropy()

    def keras_metrics(self, metrics, num_classes, top_k):
        return []  # the positions are the head's: scored on validation by `labelled_scores`

    def infer_classes(self, raw, separator):
        return []  # (the vocabulary, given by the Preprocessor once the text modality is adapted)

    def check_classes(self, classes, where):
        if MASK_TOKEN not in classes:
            raise DataError(where, "the text modality's vocabulary has no [mask] token", "adapt the text again")

    def encode_tf(self, raw, classes, table, separator):
        """The text's token ids `[B, L]` (as the modality's vectorizer gives them); mask: its words but `[mask]`."""
        text = tf.strings.lower(raw) if self.standardize == "lower" else raw
        tokens = words(text)
        ids = tf.ragged.map_flat_values(table.lookup, tokens)
        ids = tf.ragged.map_flat_values(lambda i: tf.where(i < 0, tf.constant(OOV_ID, i.dtype), i), ids)
        dense = ids.to_tensor(default_value=0, shape=[None, self.sequence_length])
        mask = tf.logical_and(dense > 0, dense != classes.index(MASK_TOKEN))
        unknown = tf.zeros([tf.shape(raw)[0]], tf.bool)
        return tf.cast(dense, tf.int32), tf.cast(mask, tf.float32), unknown

    def misaligned_tf(self, raw, text):
        return tf.zeros([tf.shape(raw)[0]], tf.bool)  # (the label is the text)

    def labelled_scores(self, predictions, targets, mask, metrics, spec):
        predictions = np.asarray(predictions)
        asked = (np.asarray(mask) > 0) & (predictions.sum(axis=-1) > 0)  # the positions the head predicted
        rows = labelled_row_mask(asked)
        count = int(rows.sum())
        if count == 0:
            return count, {"loss": 0.0, **{m: None for m in metrics}}
        p, t = predictions[asked], np.asarray(targets)[asked].astype(np.int64)
        table = {"masked_accuracy": lambda: float(np.mean(np.argmax(p, axis=-1) == t))}
        losses = self.example_losses(p, t)
        return count, {"loss": float(np.mean(losses)), **{name: table[name]() for name in metrics}}
