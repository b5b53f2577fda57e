"""Trending: time-decayed popularity. Each interaction counts 0.5 ** (age / half_life)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retrieval.hnsw import exact_top_k

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
        """Best k items by trending score; ``exclude`` is a boolean mask of banned items."""
        scores = self.scores.astype(np.float64)
        if exclude is not None and exclude.any():
            scores = np.where(exclude[: len(scores)], -np.inf, scores)
            k = min(k, int(np.isfinite(scores).sum()))
        idx = exact_top_k(scores, k)
        return idx, self.scores[idx]

    def save(self, path: Path) -> None:
        np.save(path, self.scores, allow_pickle=False)

    @classmethod
    def load(cls, path: Path, half_life_days: float) -> TrendingModel:
        return cls(np.load(path, allow_pickle=False), half_life_days)
