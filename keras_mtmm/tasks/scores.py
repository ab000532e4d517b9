"""Metric formulas in NumPy that the task types score with (AUC by Mann-Whitney U, F1), and the ranking
metrics of a binary task scored per group (GAUC, NDCG@k)."""

from __future__ import annotations

import numpy as np


def roc_auc(targets: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann–Whitney U, ties averaged); None if one class is absent."""
    positive = np.asarray(targets) > 0.5
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    average_rank = upper - (counts - 1) / 2.0
    ranks = average_rank[inverse]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """F1 of boolean arrays; 0 when there is neither a true nor a predicted positive."""
    true_positive = float(np.sum(truth & predicted))
    denominator = float(np.sum(truth) + np.sum(predicted))
    return 2.0 * true_positive / denominator if denominator else 0.0


def mean_defined(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def groups_of(groups: np.ndarray) -> list[np.ndarray]:
    """The row indices of each group (e.g. each user's impressions), in order of first appearance."""
    _, first, inverse = np.unique(np.asarray(groups, dtype=object).astype(str), return_index=True, return_inverse=True)
    order = np.argsort(first)
    members = [np.flatnonzero(inverse == group) for group in range(len(first))]
    return [members[group] for group in order]


def group_auc(targets: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float | None:
    """GAUC: the mean of each group's AUC weighted by its row count, over the groups holding both classes
    (Zhou et al., "Deep Interest Network", KDD 2018: impressions per user); None if no group does."""
    total, weight = 0.0, 0
    for rows in groups_of(groups):
        auc = roc_auc(targets[rows], scores[rows])
        if auc is not None:
            total, weight = total + len(rows) * auc, weight + len(rows)
    return total / weight if weight else None


def ndcg_at(targets: np.ndarray, scores: np.ndarray, groups: np.ndarray, k: int) -> float | None:
    """NDCG@k: per group, the rows ranked by score (ties: in row order), gains 2^y - 1 discounted by
    log2(rank + 1) over the top k, divided by the ideal ranking's; the mean over groups with a positive."""
    values = []
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for rows in groups_of(groups):
        relevance = (np.asarray(targets)[rows] > 0.5).astype(np.float64)
        if not relevance.any():
            continue
        ranked = relevance[np.argsort(-np.asarray(scores, dtype=np.float64)[rows], kind="stable")][:k]
        ideal = np.sort(relevance)[::-1][:k]
        values.append(
            float(((2**ranked - 1) * discounts[: len(ranked)]).sum() / ((2**ideal - 1) * discounts[: len(ideal)]).sum())
        )
    return float(np.mean(values)) if values else None


def bio_entities(tags: list[str]) -> set[tuple[int, int, str]]:
    """The entities `(start, end exclusive, type)` of one sentence's BIO tags, as conlleval reads them.

    `B-X` starts an entity of type X; `I-X` continues the entity of type X before it, and starts one
    when the tag before it is `O`, padding or another type (conlleval's rule); `O` and "" (padding,
    unlabelled) end it. A tag without a `B-`/`I-` prefix other than `O` is an entity of one token.
    """
    entities, start, kind = set(), None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, name = tag.partition("-") if tag[:2] in ("B-", "I-") else ("", "", tag)
        continues = prefix == "I" and kind == name and start is not None
        if start is not None and not continues:
            entities.add((start, i, kind))
            start, kind = None, None
        if prefix == "B" or (prefix == "I" and not continues) or (not prefix and tag not in ("O", "")):
            start, kind = i, name
            if not prefix:  # a bare tag: an entity of its own token
                entities.add((i, i + 1, name))
                start, kind = None, None
    return entities


def entity_f1(truth: list[list[str]], predicted: list[list[str]]) -> float:
    """Micro-averaged entity-level F1 over sentences (an entity counts when its span and type match exactly).

    1.0 when neither side has an entity (nothing to find, nothing wrongly found).
    """
    found = true_count = predicted_count = 0
    for true_tags, predicted_tags in zip(truth, predicted):
        expected, guessed = bio_entities(true_tags), bio_entities(predicted_tags)
        found += len(expected & guessed)
        true_count += len(expected)
        predicted_count += len(guessed)
    if true_count + predicted_count == 0:
        return 1.0
    return 2.0 * found / (true_count + predicted_count)
