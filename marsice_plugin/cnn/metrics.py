"""Classification metrics in plain numpy (no scikit-learn dependency for five formulas).

All functions take labels ``y`` in {0, 1} and scores ``p`` in [0, 1].
"""

from __future__ import annotations

import numpy as np


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve = probability that a random positive outranks a random negative (ties: ½)."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=float)
    pos, neg = p[y], p[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order), dtype=float)
    values = np.concatenate([pos, neg])[order]
    # average ranks for ties
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    rank_sum = ranks[: len(pos)].sum()
    return float((rank_sum - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg)))


def confusion(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, int]:
    """True/false positives/negatives at a threshold (p >= threshold is a positive call)."""
    y = np.asarray(y).astype(bool)
    call = np.asarray(p) >= threshold
    return {
        "tp": int((call & y).sum()),
        "fp": int((call & ~y).sum()),
        "tn": int((~call & ~y).sum()),
        "fn": int((~call & y).sum()),
    }


def summary(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall, negative predictive value and ROC-AUC at a threshold."""
    c = confusion(y, p, threshold)

    def ratio(a: int, b: int) -> float:
        return float(a / b) if b else float("nan")

    return {
        "n": len(y),
        "positives": int(np.sum(y)),
        "accuracy": ratio(c["tp"] + c["tn"], len(y)),
        "precision": ratio(c["tp"], c["tp"] + c["fp"]),
        "recall": ratio(c["tp"], c["tp"] + c["fn"]),
        "npv": ratio(c["tn"], c["tn"] + c["fn"]),
        "roc_auc": roc_auc(y, p),
        **c,
    }


def brightness_baseline(x: np.ndarray) -> np.ndarray:
    """The baseline detector's score: how far a chunk's brightest 0.1 % stands above its median.

    This is what "look for bright pixels" amounts to; it is compared by ROC-AUC (threshold-free) so
    no threshold has to be tuned for it.
    """
    flat = x.reshape(len(x), -1)
    return np.percentile(flat, 99.9, axis=1) - np.median(flat, axis=1)
