"""Candidate generation: run each generator for a user, merge, and attach user-item signals.

Pure numpy over fitted models, no I/O, so training builds ranker examples with exactly the
code the retrieval server runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from shortlist.retrieval.als import AlsModel
from shortlist.retrieval.content import ContentModel
from shortlist.retrieval.hnsw import HnswIndex, MipsIndex, exact_top_k
from shortlist.retrieval.trending import TrendingModel

GENERATORS = ("als", "content", "trending")

SEGMENT_NEW = "new"
SEGMENT_ONBOARDING = "onboarding"
SEGMENT_LIGHT = "light"
SEGMENT_ESTABLISHED = "established"

# Above this share of the catalog, an exact scan is cheaper than over-fetching from HNSW.
_EXACT_SHARE = 0.3


@dataclass
class RetrievalConfig:
    """Candidate counts per generator and user-vector parameters (chosen in training)."""

    als_candidates: int = 200
    content_candidates: int = 100
    trending_candidates: int = 50
    max_candidates: int = 300
    taste_half_life_days: float = 365.0
    established_min_items: int = 5
    rrf_k: float = 60.0
    recent_items: int = 20


@dataclass
class CandidateSet:
    items: np.ndarray  # int64 item indices, merged retrieval order
    gen_scores: np.ndarray  # (n, len(GENERATORS)) float32, NaN where not proposed
    gen_ranks: np.ndarray  # (n, len(GENERATORS)) int32, 0 where not proposed
    retrieval_score: np.ndarray  # reciprocal-rank fusion score
    als_score: np.ndarray
    taste_score: np.ndarray
    segment: str
    history_length: int
    recent_items: np.ndarray  # newest first
    user_time: int  # unix time of the user's latest event (reference time if none)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)


def segment_for(n_history: int, n_recent: int, established_min: int) -> str:
    if n_history == 0:
        return SEGMENT_ONBOARDING if n_recent else SEGMENT_NEW
    if n_history + n_recent < established_min:
        return SEGMENT_LIGHT
    return SEGMENT_ESTABLISHED


class CandidateGenerator:
    def __init__(self, n_items: int, trending: TrendingModel, content: ContentModel | None,
                 content_index: HnswIndex | None, als: AlsModel | None,
                 als_index: MipsIndex | None, now: int, config: RetrievalConfig) -> None:
        self.n_items = n_items
        self.trending = trending
        self.content = content
        self.content_index = content_index
        self.als = als
        self.als_index = als_index
        self.now = now
        self.config = config

    # -- user vectors -----------------------------------------------------------------------

    def taste_vector(self, items: np.ndarray, stamps: np.ndarray) -> np.ndarray | None:
        if self.content is None or len(items) == 0:
            return None
        ref = max(self.now, int(stamps.max()) if len(stamps) else self.now)
        return self.content.taste(items, ref - stamps, self.config.taste_half_life_days)

    def als_vector(self, user: int, items: np.ndarray, stored_ok: bool) -> np.ndarray | None:
        if self.als is None:
            return None
        if stored_ok and 0 <= user < len(self.als.user_factors):
            return self.als.user_factors[user]
        known = items[items < len(self.als.item_factors)]
        if len(known) == 0:
            return None
        known = np.unique(known)
        return self.als.fold_in(known, np.ones(len(known), dtype=np.float32))

    # -- search -----------------------------------------------------------------------------

    def search(self, index, vectors: np.ndarray, query: np.ndarray, k: int,
                banned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-k unbanned items: HNSW with over-fetch, or an exact scan when filters are wide."""
        n = len(vectors)
        banned = banned[:n]
        allowed = n - int(banned.sum())
        k = min(k, allowed)
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        fetch = k + (n - allowed)
        if index is not None and fetch <= _EXACT_SHARE * n:
            labels, scores = index.query(query, fetch)
            if isinstance(index, HnswIndex):
                scores = vectors[labels] @ query
            keep = ~banned[labels]
            labels, scores = labels[keep], scores[keep]
            if len(labels) >= k:
                order = np.argsort(-scores, kind="stable")[:k]
                return labels[order], scores[order].astype(np.float32)
        scores = (vectors @ query).astype(np.float64)
        scores[banned] = -np.inf
        idx = exact_top_k(scores, k)
        return idx, scores[idx].astype(np.float32)

    # -- main entry -------------------------------------------------------------------------

    def generate(self, user: int, items: np.ndarray, stamps: np.ndarray, recent: np.ndarray,
                 banned: np.ndarray, stored_user_ok: bool = True,
                 max_candidates: int = 0) -> CandidateSet:
        """Candidates for one user.

        ``items``/``stamps`` are the user's known history (oldest first); ``recent`` are extra
        items from the request, treated as the newest events; ``banned`` masks every item that
        must not be proposed (history, request filters).
        """
        cfg = self.config
        timings: dict[str, float] = {}
        hist_unique = np.unique(items)
        recent = np.asarray([r for r in dict.fromkeys(recent.tolist()) if r >= 0],
                            dtype=np.int64)
        segment = segment_for(len(hist_unique), len(recent), cfg.established_min_items)
        all_items = np.concatenate([items, recent])
        ref = max(self.now, int(stamps.max()) if len(stamps) else self.now)
        all_stamps = np.concatenate([stamps, np.full(len(recent), ref, dtype=np.int64)])

        counts = {"als": cfg.als_candidates, "content": cfg.content_candidates,
                  "trending": cfg.trending_candidates}
        if segment == SEGMENT_NEW:
            counts = {"als": 0, "content": 0, "trending": cfg.max_candidates}
        elif segment in (SEGMENT_ONBOARDING, SEGMENT_LIGHT):
            counts = {"als": cfg.als_candidates // 2, "content": cfg.content_candidates * 2,
                      "trending": cfg.trending_candidates}

        t0 = time.perf_counter()
        taste = self.taste_vector(all_items, all_stamps)
        als_vec = self.als_vector(user, all_items, stored_user_ok and len(recent) == 0)
        timings["user_vectors"] = (time.perf_counter() - t0) * 1e3

        proposals: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if counts["als"] and als_vec is not None and self.als is not None:
            t0 = time.perf_counter()
            proposals["als"] = self.search(self.als_index, self.als.item_factors, als_vec,
                                            counts["als"], banned)
            timings["als"] = (time.perf_counter() - t0) * 1e3
        if counts["content"] and taste is not None and self.content is not None:
            t0 = time.perf_counter()
            proposals["content"] = self.search(self.content_index, self.content.vectors,
                                                taste, counts["content"], banned)
            timings["content"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        proposals["trending"] = self.trending.top(counts["trending"], banned)
        timings["trending"] = (time.perf_counter() - t0) * 1e3

        t0 = time.perf_counter()
        merged = self._merge(proposals, max_candidates or cfg.max_candidates)
        items_out, gen_scores, gen_ranks, rrf = merged
        als_score = np.zeros(len(items_out), dtype=np.float32)
        if als_vec is not None and self.als is not None:
            ok = items_out < len(self.als.item_factors)
            als_score[ok] = self.als.item_factors[items_out[ok]] @ als_vec
        taste_score = np.zeros(len(items_out), dtype=np.float32)
        if taste is not None and self.content is not None:
            taste_score = (self.content.vectors[items_out] @ taste).astype(np.float32)
        timings["merge"] = (time.perf_counter() - t0) * 1e3

        order = np.argsort(all_stamps, kind="stable")[::-1]
        newest = np.asarray(list(dict.fromkeys(all_items[order].tolist())), dtype=np.int64)
        return CandidateSet(
            items=items_out, gen_scores=gen_scores, gen_ranks=gen_ranks, retrieval_score=rrf,
            als_score=als_score, taste_score=taste_score, segment=segment,
            history_length=len(np.unique(all_items)), recent_items=newest[: cfg.recent_items],
            user_time=int(all_stamps.max()) if len(all_stamps) else self.now,
            timings_ms=timings,
        )

    def _merge(self, proposals: dict[str, tuple[np.ndarray, np.ndarray]], limit: int):
        """Union of proposals ordered by reciprocal-rank fusion; keeps each generator's view."""
        pos: dict[int, int] = {}
        for name in GENERATORS:
            if name in proposals:
                for item in proposals[name][0].tolist():
                    pos.setdefault(item, len(pos))
        n = len(pos)
        items = np.fromiter(pos.keys(), dtype=np.int64, count=n)
        scores = np.full((n, len(GENERATORS)), np.nan, dtype=np.float32)
        ranks = np.zeros((n, len(GENERATORS)), dtype=np.int32)
        rrf = np.zeros(n, dtype=np.float64)
        for g, name in enumerate(GENERATORS):
            if name not in proposals:
                continue
            labels, vals = proposals[name]
            rows = np.fromiter((pos[i] for i in labels.tolist()), dtype=np.int64,
                               count=len(labels))
            scores[rows, g] = vals
            ranks[rows, g] = np.arange(1, len(labels) + 1)
            rrf[rows] += 1.0 / (self.config.rrf_k + ranks[rows, g])
        order = np.argsort(-rrf, kind="stable")[:limit]
        return items[order], scores[order], ranks[order], rrf[order].astype(np.float32)
