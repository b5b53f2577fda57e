"""Encoded interactions and the time-respecting splits used for ranker labels and evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from shortlist.common.attributes import UserAttributes, UserData
from shortlist.common.vocab import Vocabulary
from shortlist.training.datasets import Dataset, Social, Users


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
    """Index users (sorted by id, so indices do not depend on row order) and items, and
    collapse duplicate (user, item) pairs: to the latest event when there is time, else to one
    event with the summed weight (rows of plays or clicks without a clock).

    Users the data describes without events (a ``users.csv`` row, a tie in ``social.csv``)
    get an index too, after those with events: served, they are known users with no history,
    whom their attributes and friends can speak for."""
    order = np.argsort(np.asarray(ds.user_values, dtype=object), kind="stable")
    ids = [ds.user_values[j] for j in order.tolist()]
    known = set(ids)
    ids += sorted({u for u in ds.profile_user_ids() if u not in known})
    users = Vocabulary(ids)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    u = rank[ds.user_codes.astype(np.int64)]
    i = item_vocab.indices(ds.item_values)[ds.item_codes]
    ev = Events(u, i, ds.timestamps.astype(np.int64), ds.weights.astype(np.float32))
    return users, dedupe(ev, aggregate=not ds.has_timestamps)


def user_data(ds: Dataset, users: Vocabulary) -> UserData:
    """The dataset's user attributes and ties aligned to the user vocabulary."""
    return align_user_data(ds.users, ds.social, users)


def align_user_data(table: Users | None, social: Social | None,
                    users: Vocabulary) -> UserData:
    """Attributes and ties aligned to ``users`` (None where the data has none); ties to users
    outside the vocabulary are dropped, repeated ones added."""
    attributes = (UserAttributes.align(table.user_ids, table.columns, table.rows, users)
                  if table is not None else None)
    friends = None
    if social is not None:
        a, b = users.indices(social.user_ids), users.indices(social.friend_ids)
        ok = (a >= 0) & (b >= 0)
        friends = sp.csr_matrix((np.asarray(social.weights, np.float32)[ok], (a[ok], b[ok])),
                                shape=(len(users), len(users)), dtype=np.float32)
        friends.sum_duplicates()
    return UserData(attributes, friends)


def dedupe(ev: Events, aggregate: bool = False) -> Events:
    """One event per (user, item): the latest (ties: the later row), or, with ``aggregate``,
    the first row carrying the sum of the pair's weights."""
    rows = np.arange(len(ev))
    order = np.lexsort((rows, ev.timestamps, ev.items, ev.users))
    u, i = ev.users[order], ev.items[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    if not aggregate:
        return ev.take(np.sort(order[last]))
    first = np.ones(len(order), dtype=bool)
    first[1:] = last[:-1]
    group = np.cumsum(first) - 1
    sums = np.bincount(group, weights=ev.weights[order]).astype(np.float32)
    keep = order[first]
    out = ev.take(keep)
    out.weights = sums
    resort = np.argsort(keep, kind="stable")
    return out.take(resort)


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


def pair_hash(users: np.ndarray, items: np.ndarray, seed: int) -> np.ndarray:
    """A seeded pseudo-random uint64 per (user, item): a draw that does not depend on the
    order the rows came in (so a split exported and reloaded is carved the same way)."""
    with np.errstate(over="ignore"):
        x = (users.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
             ^ items.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
             ^ np.uint64(seed) * np.uint64(0x165667B19E3779F9))
        x ^= x >> np.uint64(31)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(29)
    return x


def holdout_random(ev: Events, n_last: int | float = 1, min_items: int = 5,
                   seed: int = 42) -> np.ndarray:
    """Like ``holdout_last`` but each eligible user's held-out events are drawn at random
    (seeded by ``pair_hash``): the carving for data without real timestamps, where "latest"
    means nothing."""
    order = np.lexsort((pair_hash(ev.users, ev.items, seed), ev.users))
    users = ev.users[order]
    counts = np.bincount(users, minlength=int(users.max()) + 1 if len(users) else 0)
    starts = np.concatenate([[0], np.cumsum(counts)])[:-1]
    pos = np.arange(len(order)) - starts[users]
    total = counts[users]
    if isinstance(n_last, float) and n_last < 1:
        take = np.maximum(1, np.floor(total * n_last)).astype(np.int64)
    else:
        take = np.full(len(order), int(n_last))
    chosen = (total >= min_items) & (pos < take)
    mask = np.zeros(len(ev), dtype=bool)
    mask[order[chosen]] = True
    return mask


def holdout(ev: Events, n_last: int | float, min_items: int, by_time: bool,
            seed: int = 42) -> np.ndarray:
    """Each eligible user's latest events (``by_time``) or a seeded random draw of them.

    Every split in training (validation, the ranker's labels) is carved the way the test is,
    so that validation measures what the test will.
    """
    if by_time:
        return holdout_last(ev, n_last, min_items)
    return holdout_random(ev, n_last, min_items, seed)
