"""Candidate generation: ask each generator for a user, merge, and attach every generator's view.

Pure numpy over fitted generators, no I/O, so training builds ranker examples with exactly the
code the retrieval server runs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from shortlist.common.candidates import (
    SEGMENT_ESTABLISHED,
    SEGMENT_LIGHT,
    SEGMENT_NEW,
    SEGMENT_ONBOARDING,
    Candidates,
)
from shortlist.retrieval.generators import Generator, UserState


@dataclass
class RetrievalConfig:
    """How proposals become one list (each generator's own count is in its config)."""

    max_candidates: int = 300
    established_min_items: int = 5
    rrf_k: float = 60.0
    recent_items: int = 20


def segment_for(n_history: int, n_recent: int, established_min: int) -> str:
    if n_history == 0:
        return SEGMENT_ONBOARDING if n_recent else SEGMENT_NEW
    if n_history + n_recent < established_min:
        return SEGMENT_LIGHT
    return SEGMENT_ESTABLISHED


class CandidateSource:
    """The generators of one artifact version, asked in registry order and merged by RRF."""

    def __init__(self, generators: Mapping[str, Generator], config: RetrievalConfig,
                 scale: float = 1.0) -> None:
        self.generators = dict(generators)
        self.config = config
        # Every generator's count times this: evaluation's leave-one-out asks the others
        # for more so that they fill the same candidate budget without the one left out.
        self.scale = scale

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.generators)

    def counts(self, segment: str) -> dict[str, int]:
        """Proposals wanted from each generator for a user on this rung of the ladder.

        Nothing is known of a new user, so only generators that serve such users propose,
        sharing the whole candidate budget; short histories scale each generator's count by
        its ``light_factor``.
        """
        if segment == SEGMENT_NEW:
            cold = [n for n, g in self.generators.items() if g.serves_new_users]
            return {n: (self.config.max_candidates if n in cold else 0) for n in self.generators}
        if segment in (SEGMENT_ONBOARDING, SEGMENT_LIGHT):
            return {n: int(g.config.candidates * g.config.light_factor * self.scale)
                    for n, g in self.generators.items()}
        return {n: round(g.config.candidates * self.scale) for n, g in self.generators.items()}

    def generate(self, user: UserState, banned: np.ndarray,
                 max_candidates: int = 0) -> Candidates:
        """Candidates for one user; ``banned`` masks every item that must not be proposed
        (history, request filters)."""
        cfg = self.config
        timings: dict[str, float] = {}
        n_recent = len(user.recent)
        n_history = len(np.unique(user.items[: len(user.items) - n_recent]))
        segment = segment_for(n_history, n_recent, cfg.established_min_items)
        proposals: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, k in self.counts(segment).items():
            if k > 0:
                t0 = time.perf_counter()
                ids, scores = self.generators[name].propose(user, k, banned)
                timings[name] = (time.perf_counter() - t0) * 1e3
                if len(ids):
                    proposals[name] = (ids, scores)

        t0 = time.perf_counter()
        cands = self.merge(proposals, max_candidates or cfg.max_candidates)
        for g, gen in enumerate(self.generators.values()):
            if len(cands):
                aff = gen.affinity(user, cands.items)
                if aff is not None:
                    cands.affinity[:, g] = aff
        timings["merge"] = (time.perf_counter() - t0) * 1e3

        # Newest first; events at the same second (or data without time) in a fixed
        # pseudo-random order, not by item index, which may carry meaning (ids by date).
        with np.errstate(over="ignore"):
            tiebreak = user.items.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        order = np.lexsort((tiebreak, user.stamps))[::-1]
        items = user.items[order]
        _, first = np.unique(items, return_index=True)  # each item's newest event
        first = np.sort(first)
        # An item whose newest event is a dislike is no taste to match: the ranker's
        # "similar to what they just had" features must not pull its likes up.
        newest = items[first[user.weights[order][first] >= 0]].astype(np.int64)
        cands.segment = segment
        cands.history_length = len(np.unique(user.items))
        cands.recent_items = newest[: cfg.recent_items]
        cands.user_time = int(user.stamps.max()) if len(user.stamps) else user.now
        cands.timings_ms = timings
        return cands

    def merge(self, proposals: Mapping[str, tuple[np.ndarray, np.ndarray]],
              limit: int) -> Candidates:
        """Union of proposals ordered by reciprocal-rank fusion; keeps each generator's view.

        Scores live on different scales (inner products, cosines, decayed counts), ranks do
        not: RRF (sum of 1/(rrf_k + rank)) is also the order served when ranking is down.
        """
        names = self.names
        g = len(names)
        present = [(j, proposals[name]) for j, name in enumerate(names) if name in proposals]
        labels = (np.concatenate([ids for _, (ids, _) in present]).astype(np.int64)
                  if present else np.zeros(0, np.int64))
        # Rows in order of first proposal (generator order, then each generator's rank): one
        # np.unique instead of a dict lookup per proposed item.
        uniq, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
        appearance = np.argsort(first, kind="stable")
        row_of = np.empty(len(uniq), np.int64)
        row_of[appearance] = np.arange(len(uniq))
        all_rows = row_of[inverse.ravel()]
        n = len(uniq)
        items = uniq[appearance]
        scores = np.full((n, g), np.nan, dtype=np.float32)
        ranks = np.zeros((n, g), dtype=np.int32)
        rrf = np.zeros(n, dtype=np.float64)
        start = 0
        for j, (ids, vals) in present:
            rows = all_rows[start:start + len(ids)]
            start += len(ids)
            scores[rows, j] = vals
            ranks[rows, j] = np.arange(1, len(ids) + 1)
            rrf[rows] += 1.0 / (self.config.rrf_k + ranks[rows, j])
        order = np.argsort(-rrf, kind="stable")[:limit]
        return Candidates(items[order], names, scores[order], ranks[order],
                          np.full((len(order), g), np.nan, np.float32),
                          rrf[order].astype(np.float32))
