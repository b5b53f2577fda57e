"""Determinantal point process re-ranking: the list whose items are relevant and unlike each
other as a set, not only pairwise (Chen, Zhang and Zhou, "Fast Greedy MAP Inference for
Determinantal Point Process to Improve Recommendation Diversity", NeurIPS 2018)."""

from __future__ import annotations

import numpy as np


def dpp(relevance: np.ndarray, vectors: np.ndarray, k: int, theta: float) -> np.ndarray:
    """Indices of k items chosen by greedy MAP inference on the kernel
    ``L = diag(r) S diag(r)``, with ``S`` the cosine similarities of ``vectors`` (unit rows)
    and ``r = exp(alpha * rel)``, ``alpha = theta / (2 (1 - theta))`` (the paper's trade-off).

    Relevance is min-max scaled to [0, 1] so ``theta`` means the same whatever the ranker's
    score scale. ``theta = 1`` is plain relevance order; smaller values diversify more. When
    the kernel runs out of rank (more items wanted than independent directions), the rest
    follow in relevance order. Each step updates a Cholesky factor incrementally, so the
    cost is O(k² n) for n candidates.
    """
    n = len(relevance)
    k = max(0, min(k, n))
    raw = np.asarray(relevance, dtype=np.float64)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    if theta >= 1.0:
        return np.argsort(-raw, kind="stable")[:k]
    span = raw.max() - raw.min()
    rel = (raw - raw.min()) / span if span > 0 else np.zeros(n)
    alpha = theta / (2.0 * (1.0 - theta))
    r = np.exp(alpha * (rel - 1.0))  # shifted by the max: the same kernel up to scale
    v = np.asarray(vectors, dtype=np.float64)
    d2 = r * r * np.einsum("ij,ij->i", v, v)  # diag(L)
    c = np.zeros((k, n))
    order = np.empty(k, dtype=np.int64)
    chosen = np.zeros(n, dtype=bool)
    for step in range(k):
        gain = np.where(chosen, -np.inf, d2)
        best = int(np.argmax(gain))
        if gain[best] <= 1e-12:  # no direction left: relevance decides the rest
            rest = np.argsort(-raw, kind="stable")
            rest = rest[~chosen[rest]][: k - step]
            order[step:] = rest
            return order
        order[step] = best
        chosen[best] = True
        if step + 1 == k:
            break
        l_row = r[best] * (v @ v[best]) * r  # L[best, :]
        e = (l_row - c[:step].T @ c[:step, best]) / np.sqrt(d2[best])
        c[step] = e
        d2 = d2 - e * e
    return order
