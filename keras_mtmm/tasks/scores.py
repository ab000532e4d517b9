"""Metric formulas in NumPy that the task types score with (AUC by Mann-Whitney U, F1)."""

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
