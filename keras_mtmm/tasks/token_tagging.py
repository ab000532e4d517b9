"""Token tagging (e.g. named entities in BIO tags): one class per whitespace token of a text modality.

The label cell is the sentence's tags joined by spaces, one per word of the text (`B-PER I-PER O`);
the model reads the text encoder's per-token features and gives a softmax over the tags at each of
the modality's `sequence_length` positions. Targets and masks are `[B, L]`: a position is labelled
where the row has a tag for it (words past `sequence_length` are cut, as the text is); an empty cell
leaves the row unlabelled. A row whose tag count is not its word count is an error at its file and
line: the tags would be read against the wrong words.

Scores: `token_accuracy` over the labelled tokens, and `entity_f1`, entity-level F1 on BIO tags
(conlleval's rule, `keras_mtmm.tasks.scores.bio_entities`). The loss is the mean cross-entropy over
the labelled tokens of a batch.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_mtmm.cells import as_strings
from keras_mtmm.errors import DataError
from keras_mtmm.registry import TASK_TYPES
from keras_mtmm.tasks.base import REDUCTION, TaskType, labelled_row_mask
from keras_mtmm.tasks.multiclass import MulticlassTask
from keras_mtmm.tasks.scores import entity_f1


def words(text):
    """The whitespace words of `[B]` strings, ragged `[B, None]` (how TextVectorization splits them)."""
    return tf.strings.split(tf.strings.strip(text))


@TASK_TYPES.register("token_tagging")
class TokenTaggingTask(TaskType):
    """One tag per token of a text modality (`tasks.<t>.modality`), tags joined by spaces in the label cell."""

    name = "token_tagging"
    activation = "softmax"
    metric_names = ("entity_f1", "token_accuracy")
    default_metrics = ("entity_f1", "token_accuracy")
    per_token = True
    settings = ("sequence_length",)
    numpy_metrics = ("entity_f1",)  # no Keras metric in training; the validation scores fill them in

    def __init__(self, sequence_length: int | None = None):
        self.sequence_length = sequence_length

    def loss(self, target_scale=1.0):
        return keras.losses.SparseCategoricalCrossentropy(reduction=REDUCTION)

    def keras_metrics(self, metrics, num_classes, top_k):
        table = {"token_accuracy": lambda: keras.metrics.SparseCategoricalAccuracy(name="token_accuracy")}
        return [table[m]() for m in metrics if m in table]

    def infer_classes(self, raw, separator):
        return sorted({tag for cell in as_strings(raw) for tag in cell.split()})

    def check_classes(self, classes, where):
        if len(classes) < 2:
            raise DataError(where, f"token tagging needs at least 2 tags, found {classes}", "check the label column")

    def unknown_label(self, cell, classes, separator):
        return next(tag for tag in cell.split() if tag not in classes)

    def encode_tf(self, raw, classes, table, separator):
        if self.sequence_length is None:
            raise ValueError("TokenTaggingTask: the text modality's sequence_length is needed to encode tags")
        tags = words(raw)
        ids = tf.ragged.map_flat_values(table.lookup, tags)
        unknown = tf.reduce_any(ids < 0, axis=1)
        dense = ids.to_tensor(default_value=-2, shape=[None, self.sequence_length])  # -2: no tag there
        mask = tf.cast(dense != -2, tf.float32)
        return tf.cast(tf.maximum(dense, 0), tf.int32), mask, unknown

    def misaligned_tf(self, raw, text):
        """Rows whose tags are not one per word of their text (`[B]` bool; unlabelled rows are not)."""
        tags = words(raw).row_lengths()
        return tf.logical_and(tags > 0, tags != words(text).row_lengths())

    def check_aligned(self, table, column: np.ndarray, text_column: str, task: str, label: str) -> None:
        """A `DataError` at the first row (its file and line where the table knows them) whose tags are not
        one per word of its text."""
        text = as_strings(table[text_column])
        raw = tf.constant(as_strings(column).tolist(), tf.string)
        misaligned = np.asarray(self.misaligned_tf(raw, tf.constant(text.tolist(), tf.string)))
        if misaligned.any():
            row = int(np.argmax(misaligned))
            place = table.where(row) if hasattr(table, "where") else None
            at = f"{place}: column '{label}'" if place else f"tasks.{task}.label (column '{label}'), row {row}"
            raise self.misaligned_error(column, text, row, at)

    def misaligned_error(self, raw, text, row: int, where: str) -> DataError:
        tags, count = as_strings(raw[row : row + 1])[0].split(), len(as_strings(text[row : row + 1])[0].split())
        return DataError(
            where,
            f"{len(tags)} tag{'s' if len(tags) != 1 else ''} for {count} word{'s' if count != 1 else ''} of the text",
            "give one tag per whitespace-separated word of the text, joined by spaces",
        )

    def example_losses(self, predictions, targets, target_scale=1.0):
        """As Keras computes it; a tagged word the model saw no token for (its text removed, all-zero
        probabilities) is scored as a uniform guess, log C."""
        seen = np.sum(predictions, axis=-1, keepdims=True) > 0
        guess = np.where(seen, predictions, np.float32(1.0 / predictions.shape[-1]))
        return MulticlassTask.example_losses(self, guess, targets)

    def labelled_scores(self, predictions, targets, mask, metrics, spec):
        rows = labelled_row_mask(mask)
        count = int(rows.sum())
        if count == 0:
            return count, {"loss": 0.0, **{m: None for m in metrics}}
        p, t, m = np.asarray(predictions)[rows], np.asarray(targets)[rows].astype(np.int64), np.asarray(mask)[rows] > 0
        guessed = np.argmax(p, axis=-1)
        table = {
            "token_accuracy": lambda: float(np.mean(guessed[m] == t[m])),
            "entity_f1": lambda: entity_f1(_tag_names(t, m, spec["classes"]), _tag_names(guessed, m, spec["classes"])),
        }
        losses = self.example_losses(p[m], t[m])
        return count, {"loss": float(np.mean(losses)), **{name: table[name]() for name in metrics}}

    def predicted_labels(self, predictions, classes, separator):
        """`[B, L]` tag names; "" at padding (where the head's probabilities are all 0)."""
        names = tf.gather(tf.constant(classes), tf.argmax(predictions, axis=-1))
        return tf.where(tf.reduce_sum(predictions, axis=-1) > 0, names, tf.zeros_like(names))

    def prior(self, targets, mask, classes):
        """The training tags' frequencies (over every labelled token) at every position, `[L, C]`."""
        return np.tile(MulticlassTask.prior(self, targets, mask, classes), (np.asarray(targets).shape[1], 1))


def _tag_names(indices: np.ndarray, mask: np.ndarray, classes: list[str]) -> list[list[str]]:
    """Tag sequences for `entity_f1`: the class names, "" where unlabelled."""
    return [[classes[i] if keep else "" for i, keep in zip(row, keep_row)] for row, keep_row in zip(indices, mask)]
