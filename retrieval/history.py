"""Per-user interaction history: a compact CSR base from training plus an online overlay."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shortlist.common.ordering import time_order
from shortlist.common.timestamps import time_offsets


class UserHistory:
    """Events per user index, oldest first: item indices, timestamps and weights.

    Timestamps are held as seconds after ``time_base`` (the earliest), in 4 bytes when they
    span less than 136 years: at 20M events that is 70 MB of a retrieval server instead of
    160. ``events`` gives them back as int64 unix times.
    """

    def __init__(self, indptr: np.ndarray, items: np.ndarray, timestamps: np.ndarray,
                 weights: np.ndarray, time_base: int = 0) -> None:
        self.indptr = indptr
        self.items = items
        self.timestamps = timestamps
        self.weights = weights
        self.time_base = time_base
        self._overlay: dict[int, list[tuple[int, int, float]]] = {}

    @classmethod
    def from_events(cls, user_idx: np.ndarray, item_idx: np.ndarray, timestamps: np.ndarray,
                    weights: np.ndarray, n_users: int) -> UserHistory:
        order = time_order(user_idx, item_idx, timestamps)
        counts = np.bincount(user_idx, minlength=n_users)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        stamps, base = time_offsets(np.asarray(timestamps, dtype=np.int64)[order])
        return cls(indptr, item_idx[order].astype(np.int32), stamps,
                   weights[order].astype(np.float32), base)

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def events(self, user: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if user < 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0, dtype=np.float32)
        if user < self.n_users:
            lo, hi = self.indptr[user], self.indptr[user + 1]
            items = self.items[lo:hi].astype(np.int64)
            stamps = self.timestamps[lo:hi] + np.int64(self.time_base)  # int64, one pass
            weights = self.weights[lo:hi]
        else:
            items = np.zeros(0, dtype=np.int64)
            stamps, weights = items.copy(), np.zeros(0, dtype=np.float32)
        extra = self._overlay.get(user)
        if extra:
            e = np.asarray(extra, dtype=np.float64)
            items = np.concatenate([items, e[:, 0].astype(np.int64)])
            stamps = np.concatenate([stamps, e[:, 1].astype(np.int64)])
            weights = np.concatenate([weights, e[:, 2].astype(np.float32)])
        return items, stamps, weights

    def append(self, user: int, item: int, timestamp: int, weight: float) -> None:
        self._overlay.setdefault(user, []).append((item, timestamp, weight))

    def has_overlay(self, user: int) -> bool:
        return bool(self._overlay.get(user))

    def save(self, path: Path) -> None:
        np.savez(path, indptr=self.indptr, items=self.items, timestamps=self.timestamps,
                 weights=self.weights, time_base=np.int64(self.time_base))

    @classmethod
    def load(cls, path: Path) -> UserHistory:
        with np.load(path, allow_pickle=False) as z:
            base = int(z["time_base"]) if "time_base" in z.files else 0  # else absolute
            return cls(z["indptr"], z["items"], z["timestamps"], z["weights"], base)
