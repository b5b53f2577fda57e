"""Calibrated re-ranking: a list whose category mix matches the user's (Steck, "Calibrated
Recommendations", RecSys 2018). Diversity that follows the user's own breadth, rather than
pairwise distance that may push away from what they like."""

from __future__ import annotations

import numpy as np


def calibrate(relevance: np.ndarray, categories: np.ndarray, target: np.ndarray, k: int,
              lam: float, smoothing: float = 0.01) -> np.ndarray:
    """Indices of k items chosen greedily by ``(1 - lam) * sum(rel) - lam * KL(p || q)``.

    ``categories`` (n x c) holds each item's category distribution (rows sum to 1, or 0 for
    an item without categories), ``target`` (c,) the user's distribution p; q is the list's
    mix, smoothed towards p by ``smoothing`` so the divergence stays finite. Relevance is
    min-max scaled to [0, 1]. ``lam = 0`` is plain relevance order.
    """
    n = len(relevance)
    k = max(0, min(k, n))
    raw = np.asarray(relevance, dtype=np.float64)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    p = np.asarray(target, dtype=np.float64)
    if lam <= 0.0 or p.sum() <= 0:
        return np.argsort(-raw, kind="stable")[:k]
    p = p / p.sum()
    span = raw.max() - raw.min()
    rel = (raw - raw.min()) / span if span > 0 else np.zeros(n)
    cats = np.asarray(categories, dtype=np.float64)
    support = p > 0
    mix = np.zeros(len(p))
    total_rel = 0.0
    chosen = np.zeros(n, dtype=bool)
    order = np.empty(k, dtype=np.int64)
    for step in range(k):
        q = (mix[None, :] + cats) / (step + 1)  # the mix with each candidate added
        q = (1 - smoothing) * q + smoothing * p[None, :]
        kl = (p[support] * np.log(p[support] / q[:, support])).sum(axis=1)
        score = (1 - lam) * (total_rel + rel) - lam * kl
        score[chosen] = -np.inf
        best = int(np.argmax(score))
        order[step] = best
        chosen[best] = True
        mix += cats[best]
        total_rel += rel[best]
    return order
