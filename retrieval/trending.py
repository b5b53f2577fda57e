"""Trending: time-decayed popularity. Each interaction counts 0.5 ** (age / half_life)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DAY = 86400.0


def decay(ages_s: np.ndarray, half_life_days: float) -> np.ndarray:
    """Weight of events ``ages_s`` seconds old; a half-life <= 0 disables decay."""
    if half_life_days <= 0:
        return np.ones_like(ages_s, dtype=np.float64)
    return np.power(0.5, np.maximum(ages_s, 0) / (half_life_days * DAY))


class TrendingModel:
    def __init__(self, scores: np.ndarray | None = None, half_life_days: float = 30.0) -> None:
        self.half_life_days = half_life_days
        self.scores = np.zeros(0, dtype=np.float32) if scores is None else scores
        # (scores array, its order): one attribute, so concurrent readers see a matching pair
        self._sorted_pair: tuple[np.ndarray, np.ndarray] | None = None

    def fit(self, item_idx: np.ndarray, timestamps: np.ndarray, n_items: int,
            now: int, weights: np.ndarray | None = None) -> TrendingModel:
        w = decay((now - timestamps).astype(np.float64), self.half_life_days)
        if weights is not None:
            w = w * (weights > 0)
        self.scores = np.bincount(item_idx, weights=w, minlength=n_items).astype(np.float32)
        return self

    def extend(self, n_items: int) -> None:
        if n_items > len(self.scores):
            self.scores = np.concatenate(
                [self.scores, np.zeros(n_items - len(self.scores), np.float32)])

    def top(self, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Best k items by trending score (ties: lower index); ``exclude`` masks banned items.

        Walks a precomputed order, so a request costs O(k + banned) rather than a pass over
        the catalog (0.5 ms at 100K items, per request).
        """
        scores, order = self._sorted()
        k = min(k, len(scores))
        if exclude is None:
            idx = order[:k]
        else:
            exclude = exclude[: len(scores)]
            n_banned = int(np.count_nonzero(exclude))
            head = order[: k + n_banned]  # at most n_banned of these are excluded
            idx = head[~exclude[head]][:k]
        return idx, scores[idx]

    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        scores = self.scores  # replaced (never mutated) by fit and extend
        pair = self._sorted_pair
        if pair is None or pair[0] is not scores:
            pair = (scores, np.lexsort((np.arange(len(scores)), -scores.astype(np.float64))))
            self._sorted_pair = pair
        return pair

    def save(self, path: Path) -> None:
        np.save(path, self.scores, allow_pickle=False)

    @classmethod
    def load(cls, path: Path, half_life_days: float) -> TrendingModel:
        return cls(np.load(path, allow_pickle=False), half_life_days)
