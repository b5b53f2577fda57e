"""Sequence: what people engage with next, after the items this user engaged with last.

A first-order Markov model over item transitions, as news and session recommenders use: every
user's history in time order gives pairs (item, an item that came up to ``window`` steps
later), weighted by 1/gap and by the age of the later event, summed over users and normalised
per source item into P(next | item). A user's score for item j is the sum over their
``last_items`` latest distinct items h (newest weighted 1, then ``position_decay`` per step
back) of P(j | h). Only the latest items propose, so it sees what the bag-of-items generators
cannot: where the user is heading now. It needs no stored user state, so an anonymous session
(an unknown user with ``recent_item_ids``, oldest first) gets its candidates from the first
request.

Order needs time: on data without timestamps there is no order to learn and the generator is
skipped (``ordered`` is False there, set by training from the data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from shortlist.common.ordering import time_order
from shortlist.retrieval.generators.base import FitData, Generator, GeneratorSkipped, UserState
from shortlist.retrieval.generators.itemitem import ItemItemGenerator, pruned
from shortlist.retrieval.trending import decay


@dataclass
class SequenceConfig:
    candidates: int = 50
    light_factor: float = 1.0
    # Pairs up to this many steps apart count, weighted 1/gap: 1 is the strict next item; a
    # wider window also learns "a few items later", which sparse logs need.
    window: int = 3
    # Transitions lose half their weight every this many days before the latest event
    # (tastes and catalogs drift); 0: no decay.
    half_life_days: float = 0.0
    # How many of the user's latest distinct items propose, and how much less each step back
    # counts than the one after it.
    last_items: int = 5
    position_decay: float = 0.7
    # Transitions kept per item (the most probable): bounds the model at items x neighbours.
    neighbours: int = 100
    # The events are in a meaningful order (real timestamps); False: skipped.
    ordered: bool = True


def transition_counts(users: np.ndarray, items: np.ndarray, stamps: np.ndarray,
                      strength: np.ndarray, n_items: int, window: int) -> sp.csr_matrix:
    """C[a, b] = sum of strength(later event) / gap over pairs where b followed a by ``gap``
    <= ``window`` steps in one user's time-ordered history (a repeat of the same item is no
    transition). Ties in time are ordered as the served history is (``common.ordering``)."""
    order = time_order(users, items, stamps)
    # int32 copies: half the memory of the event arrays' int64 (20M events: 280 MB less),
    # and indices under 2**31 are what scipy stores anyway.
    u, i = users[order].astype(np.int32), items[order].astype(np.int32)
    s = strength[order]
    del order
    total = sp.csr_matrix((n_items, n_items), dtype=np.float32)
    for gap in range(1, window + 1):
        if len(u) <= gap:
            break
        # One gap at a time: the pairs of all gaps at once would need window x events memory.
        same = (u[:-gap] == u[gap:]) & (i[:-gap] != i[gap:])
        pairs = sp.csr_matrix((s[gap:][same] / gap, (i[:-gap][same], i[gap:][same])),
                              shape=(n_items, n_items), dtype=np.float32)
        total = total + pairs  # duplicates summed by the conversion
    return total


def top_per_csr_row(m: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """``m`` with only the ``keep`` largest entries of each row (ties to the lower column),
    pruned a block of rows at a time: whole-matrix sort keys at 1M users were 2 GB."""
    m = m.tocsr()
    return pruned(lambda start, end: m[start:end], m.shape[0], keep, n_cols=m.shape[1])


class SequenceGenerator(ItemItemGenerator):
    """Next-item transitions from the user's latest items (also for anonymous sessions)."""

    name = "sequence"
    Config = SequenceConfig
    untimed = {"ordered": False}

    @classmethod
    def fit(cls, data: FitData, config: SequenceConfig,
            previous: Generator | None = None) -> SequenceGenerator:
        if not config.ordered:
            raise GeneratorSkipped("the events have no timestamps, so there is no order to "
                                   "learn transitions from")
        ev = data.events
        n = len(data.catalog)
        stamps = np.asarray(ev.timestamps, dtype=np.int64)
        strength = decay((data.now - stamps).astype(np.float64), config.half_life_days)
        counts = transition_counts(np.asarray(ev.users), np.asarray(ev.items), stamps,
                                   strength.astype(np.float32), n, max(1, config.window))
        if counts.nnz == 0:
            raise GeneratorSkipped("no user has two different items in a row")
        out = np.asarray(counts.sum(axis=1)).ravel()
        out[out == 0] = 1.0
        # Normalised in place: P(next | item) without a second matrix of every transition.
        counts.data *= np.repeat((1.0 / out).astype(np.float32), np.diff(counts.indptr))
        return cls(top_per_csr_row(counts, config.neighbours), config)

    @classmethod
    def tuning_grid(cls, config: SequenceConfig) -> list[dict[str, Any]]:
        return [{"window": w, "last_items": n, "half_life_days": h}
                for w in (1, 3, 5) for n in (1, 3, 10) for h in (0.0, 90.0)]

    def sources(self, user: UserState) -> tuple[np.ndarray, np.ndarray] | None:
        """The user's latest distinct items, newest first, and their position weights."""
        # what follows a dislike is no lead
        known = ((user.items >= 0) & (user.items < self.weights.shape[0])
                 & (user.weights >= 0))
        if not known.any():
            return None
        items, stamps = user.items[known], user.stamps[known]
        # Stable: ties in time keep the history's order, and a request's recent items (all
        # stamped "now", after the history) keep the caller's order, oldest first.
        newest = items[np.argsort(stamps, kind="stable")][::-1]
        latest = np.asarray(list(dict.fromkeys(newest.tolist()))[: self.config.last_items],
                            dtype=np.int64)
        return latest, self.config.position_decay ** np.arange(len(latest), dtype=np.float64)
