"""Maximal marginal relevance: trade relevance against similarity to what is already chosen."""

from __future__ import annotations

import numpy as np


def mmr(relevance: np.ndarray, vectors: np.ndarray, k: int, lam: float) -> np.ndarray:
    """Indices of k items chosen greedily by ``lam * rel - (1 - lam) * max_sim_to_chosen``.

    Relevance is min-max scaled to [0, 1] so ``lam`` means the same whatever the ranker's score
    scale; vectors are unit vectors so similarity is cosine. ``lam = 1`` is plain relevance
    order; ties go to the earlier index.
    """
    n = len(relevance)
    k = max(0, min(k, n))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    raw = np.asarray(relevance, dtype=np.float64)
    if lam >= 1.0:  # pure relevance: exact order, no rescaling round-off
        return np.argsort(-raw, kind="stable")[:k]
    rel = raw
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 0 else np.zeros(n)
    vecs = np.asarray(vectors, dtype=np.float64)
    chosen = np.zeros(n, dtype=bool)
    max_sim = np.zeros(n)
    order = np.empty(k, dtype=np.int64)
    for step in range(k):
        score = lam * rel - (1.0 - lam) * max_sim if step else raw.copy()
        score[chosen] = -np.inf
        best = int(np.argmax(score))
        order[step] = best
        chosen[best] = True
        if lam < 1.0:
            max_sim = np.maximum(max_sim, vecs @ vecs[best])
    return order
