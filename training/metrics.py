"""Top-k ranking metrics for one user's list against their held-out items."""

from __future__ import annotations

import numpy as np


def ndcg_at_k(ranked: np.ndarray, relevant: set[int], k: int) -> float:
    if not relevant:
        return 0.0
    gains = [1.0 / np.log2(r + 2) for r, item in enumerate(ranked[:k]) if int(item) in relevant]
    ideal = sum(1.0 / np.log2(r + 2) for r in range(min(len(relevant), k)))
    return float(sum(gains) / ideal)


def recall_at_k(ranked: np.ndarray, relevant: set[int], k: int) -> float:
    if not relevant:
        return 0.0
    hits = sum(1 for item in ranked[:k] if int(item) in relevant)
    return hits / len(relevant)


def hit_at_k(ranked: np.ndarray, relevant: set[int], k: int) -> float:
    return float(any(int(item) in relevant for item in ranked[:k]))


def ap_at_k(ranked: np.ndarray, relevant: set[int], k: int) -> float:
    """Average precision at k, normalised by min(|relevant|, k)."""
    if not relevant:
        return 0.0
    hits, total = 0, 0.0
    for r, item in enumerate(ranked[:k]):
        if int(item) in relevant:
            hits += 1
            total += hits / (r + 1)
    return total / min(len(relevant), k)


def intra_list_distance(vectors: np.ndarray) -> float:
    """Mean pairwise cosine distance (1 - cos) within one list of unit vectors."""
    n = len(vectors)
    if n < 2:
        return 0.0
    sims = vectors @ vectors.T
    return float((n * n - sims.sum() - (n - np.trace(sims))) / (n * (n - 1)))


def novelty(items: np.ndarray, item_users: np.ndarray, n_users: int) -> float:
    """Mean self-information -log2(p) of the items, p = share of users who had the item."""
    if len(items) == 0:
        return 0.0
    p = np.maximum(item_users[items], 1) / max(n_users, 1)
    return float(np.mean(-np.log2(p)))
