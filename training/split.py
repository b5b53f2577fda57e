"""Encoded interactions and the time-respecting splits used for ranker labels and evaluation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from shortlist.common.attributes import UserAttributes, UserData
from shortlist.common.events import EventTypes
from shortlist.common.ordering import pair_hash, time_order
from shortlist.common.vocab import Vocabulary
from shortlist.training.datasets import Dataset, Social, Users


@dataclass
class Events:
    users: np.ndarray  # int64 user indices
    items: np.ndarray  # int64 item indices
    timestamps: np.ndarray  # int64
    weights: np.ndarray  # float32; signed (own weight times the type's) when typed
    # Typed data only (None otherwise): each event's type as a code into ``types`` and its
    # own weight before the type's, so that the type weights can be changed (tuned).
    kinds: np.ndarray | None = None  # int16
    raw: np.ndarray | None = None  # float32
    types: EventTypes | None = None

    def __len__(self) -> int:
        return len(self.users)

    def take(self, mask: np.ndarray) -> Events:
        return Events(self.users[mask], self.items[mask], self.timestamps[mask],
                      self.weights[mask],
                      None if self.kinds is None else self.kinds[mask],
                      None if self.raw is None else self.raw[mask], self.types)

    @property
    def negative(self) -> np.ndarray:
        """Events of a negative type (a dislike): never a relevant item, never popularity,
        never what a generator learns "more like this" from. None in untyped data."""
        if self.kinds is None or self.types is None:
            return np.zeros(len(self), dtype=bool)
        return self.types.negative(self.kinds)

    def positive(self) -> Events:
        """The events that say "more like this" (all of them in untyped data)."""
        negative = self.negative
        return self.take(~negative) if negative.any() else self

    def untyped(self) -> Events:
        """The same events as a system blind to types sees them: each its own weight, a
        dislike an interaction like any other (what the typed pipeline is measured against)."""
        if self.kinds is None:
            return self
        return Events(self.users, self.items, self.timestamps,
                      self.weights if self.raw is None else self.raw)

    def reweighted(self, types: EventTypes) -> Events:
        """The same events weighed by another table (codes must mean the same names)."""
        if self.kinds is None or self.raw is None:
            return self
        return dataclasses.replace(self, weights=types.apply(self.raw, self.kinds),
                                   types=types)


def encode(ds: Dataset, item_vocab: Vocabulary,
           configured: dict[str, float] | None = None) -> tuple[Vocabulary, Events]:
    """Index users (sorted by id, so indices do not depend on row order) and items, and
    collapse duplicate (user, item) pairs: to the latest event when there is time, else to one
    event with the summed weight (rows of plays or clicks without a clock).

    Users the data describes without events (a ``users.csv`` row, a tie in ``social.csv``)
    get an index too, after those with events: served, they are known users with no history,
    whom their attributes and friends can speak for.

    Typed data (an ``event`` column) is weighed by the standard table, with the types the
    data uses and the ``configured`` weights on top; a pair's latest event gives its type (a
    view then a dislike is a dislike)."""
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
    if ds.event_codes is not None:
        types = EventTypes.standard(configured, seen=ds.event_names)
        kinds = types.codes(ds.event_names)[ds.event_codes.astype(np.int64)]
        ev = Events(ev.users, ev.items, ev.timestamps, types.apply(ev.weights, kinds), kinds,
                    ev.weights, types)
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
    the first row carrying the sum of the pair's weights.

    Typed and aggregated, the row kept is the pair's strongest type (a dislike's -2 outranks a
    view's 1, so a rejected item stays rejected) carrying the sum of the pair's own weights."""
    rows = np.arange(len(ev))
    if aggregate and ev.kinds is not None and ev.types is not None:
        strength = -np.abs(ev.types.multipliers[ev.kinds.astype(np.int64)])
        order = np.lexsort((rows, strength, ev.items, ev.users))
    else:
        order = np.lexsort((rows, ev.timestamps, ev.items, ev.users))
    u, i = ev.users[order], ev.items[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    if not aggregate:
        return ev.take(np.sort(order[last]))
    first = np.ones(len(order), dtype=bool)
    first[1:] = last[:-1]
    group = np.cumsum(first) - 1
    keep = order[first]
    out = ev.take(keep)
    if out.raw is not None and out.kinds is not None and out.types is not None:
        out.raw = np.bincount(group, weights=ev.raw[order]).astype(np.float32)
        out.weights = out.types.apply(out.raw, out.kinds)
    else:
        out.weights = np.bincount(group, weights=ev.weights[order]).astype(np.float32)
    resort = np.argsort(keep, kind="stable")
    return out.take(resort)


def user_order(ev: Events) -> np.ndarray:
    """Row order grouping by user, then time, ties in time broken by a hash of (user, item)
    (``common.ordering``: neither the catalog's order nor the file's)."""
    return time_order(ev.users, ev.items, ev.timestamps)


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
    so that validation measures what the test will. Only positive events are held out (and
    counted towards ``min_items``): a dislike is no item to recommend; it stays in training.
    """
    negative = ev.negative
    if negative.any():
        mask = np.zeros(len(ev), dtype=bool)
        mask[~negative] = holdout(ev.take(~negative), n_last, min_items, by_time, seed)
        return mask
    if by_time:
        return holdout_last(ev, n_last, min_items)
    return holdout_random(ev, n_last, min_items, seed)
