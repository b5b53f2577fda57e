"""Encoded interactions and the time-respecting splits used for ranker labels and evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shortlist.common.vocab import Vocabulary
from shortlist.training.datasets import Dataset


@dataclass
class Events:
    users: np.ndarray  # int64 user indices
    items: np.ndarray  # int64 item indices
    timestamps: np.ndarray  # int64
    weights: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.users)

    def take(self, mask: np.ndarray) -> Events:
        return Events(self.users[mask], self.items[mask], self.timestamps[mask],
                      self.weights[mask])


def encode(ds: Dataset, item_vocab: Vocabulary) -> tuple[Vocabulary, Events]:
    """Index users and items, collapsing duplicate (user, item) pairs to the latest event."""
    users = Vocabulary(ds.user_values)
    u = ds.user_codes.astype(np.int64)
    i = item_vocab.indices(ds.item_values)[ds.item_codes]
    ev = Events(u, i, ds.timestamps.astype(np.int64), ds.weights.astype(np.float32))
    return users, dedupe(ev)


def dedupe(ev: Events) -> Events:
    """Keep one event per (user, item): the latest (ties: the later row)."""
    rows = np.arange(len(ev))
    order = np.lexsort((rows, ev.timestamps, ev.items, ev.users))
    u, i = ev.users[order], ev.items[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    return ev.take(np.sort(order[last]))


def user_order(ev: Events) -> np.ndarray:
    """Row order grouping by user, then time, with item index breaking timestamp ties.

    The tie-break is deterministic: among events with the same timestamp the one with the
    highest item index counts as the latest.
    """
    return np.lexsort((ev.items, ev.timestamps, ev.users))


def holdout_last(ev: Events, n_last: int | float = 1, min_items: int = 5) -> np.ndarray:
    """Mask of each eligible user's latest events (``n_last`` items, or a fraction if < 1).

    Users with fewer than ``min_items`` events hold out nothing.
    """
    order = user_order(ev)
    users = ev.users[order]
    counts = np.bincount(users, minlength=int(users.max()) + 1 if len(users) else 0)
    starts = np.concatenate([[0], np.cumsum(counts)])[:-1]
    pos = np.arange(len(order)) - starts[users]  # position within the user's timeline
    total = counts[users]
    if isinstance(n_last, float) and n_last < 1:
        take = np.maximum(1, np.floor(total * n_last)).astype(np.int64)
    else:
        take = np.full(len(order), int(n_last))
    chosen = (total >= min_items) & (pos >= total - take)
    mask = np.zeros(len(ev), dtype=bool)
    mask[order[chosen]] = True
    return mask
