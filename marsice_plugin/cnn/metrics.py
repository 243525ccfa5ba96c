"""Classification metrics in plain numpy (no scikit-learn dependency for five formulas).

All functions take labels ``y`` in {0, 1} and scores ``p`` in [0, 1]. The evaluation sets are small
(the frozen set v1 has 48 chunks from 12 products), so a figure alone says little: the 95 %
intervals here tell how far it could move on another set drawn the same way.
"""

from __future__ import annotations

import numpy as np

from ..detect_defaults import is_flagged


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
    call = is_flagged(np.asarray(p), threshold)
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


Z95 = 1.959963984540054  # the standard normal quantile of 0.975


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion such as image-level precision or NPV (nan for n = 0).

    Wilson rather than the textbook p ± z·se: with 7 images called ice-free, all right, the latter
    gives [1, 1] and would claim an NPV of 1 is proven; Wilson gives [0.65, 1], which is what seven
    images can show.
    """
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    scale = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / scale
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / scale
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def poisson_interval(count: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval of a Poisson mean from one observed ``count``, e.g. false polygons on real ground.

    Seven false polygons on 5.6 km² of held-out ground are a count, not a rate: the interval says how far the rate a
    geologist will meet can lie from the one measured, which a single figure against a target of 1 per km² hides.
    Zero counts get a lower bound of 0 and an upper bound of about 3.69.
    """
    from scipy.stats import chi2

    if count < 0:
        raise ValueError(f"count must be >= 0, not {count}")
    tail = (1 - level) / 2
    low = 0.0 if count == 0 else float(chi2.ppf(tail, 2 * count)) / 2
    return low, float(chi2.ppf(1 - tail, 2 * count + 2)) / 2


def roc_auc_interval(
    y: np.ndarray, p: np.ndarray, groups: np.ndarray | None = None, rounds: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap 95 % interval of ROC-AUC, resampling whole ``groups`` when given.

    Chunks of one product share its terrain, sun, albedo and contrast stretch, so they are not
    independent draws; resampling products (``groups``: one id per chunk) keeps that correlation
    and gives the honest, wider interval. Without groups chunks are resampled one by one.
    Resamples holding a single class are skipped; the fixed ``seed`` makes reruns identical.
    """
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=float)
    members = []
    if groups is not None:
        keys = np.asarray(groups)
        members = [np.flatnonzero(keys == k) for k in dict.fromkeys(keys.tolist())]
    if y.all() or not y.any():
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    count = len(members) if groups is not None else len(y)
    values = []
    for _ in range(rounds):
        draw = rng.integers(0, count, count)  # the same draw either way: groups of one chunk are chunks
        pick = draw if groups is None else np.concatenate([members[j] for j in draw])
        if y[pick].all() or not y[pick].any():
            continue
        values.append(roc_auc(y[pick], p[pick]))
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def brightness_baseline(x: np.ndarray) -> np.ndarray:
    """The baseline detector's score: how far a chunk's brightest 0.1 % stands above its median.

    This is what "look for bright pixels" amounts to; it is compared by ROC-AUC (threshold-free) so
    no threshold has to be tuned for it.
    """
    flat = x.reshape(len(x), -1)
    return np.percentile(flat, 99.9, axis=1) - np.median(flat, axis=1)
