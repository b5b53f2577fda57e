"""Drift references for a version: its signals as it serves a seeded sample of its own users.

The servers compare what they serve with these (``common.drift``), so the reference is drawn by
the code they run: the retrieval models' merged candidates for each sampled user, as
``Retriever.retrieve`` builds them for a known user without filters, and the ranking
pipeline's top ``k`` of those, as ``Rank`` returns them under the version's configuration.
"""

from __future__ import annotations

import numpy as np

from shortlist.common.drift import (
    POPULARITY,
    SCORE,
    SEGMENT,
    SEGMENTS,
    SOURCES,
    Distribution,
    Reference,
    source_counts,
)
from shortlist.ranking.pipeline import RankingPipeline
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.training.offline import candidates_for

# Users served to draw a reference: enough for stable deciles (ten items each) and source
# shares, a small fraction of a fit's time at any scale (evaluation serves up to 20,000).
REFERENCE_USERS = 2000
# The list length the reference observes: what the gateway asks for by default.
REFERENCE_K = 10
# Popularity tiers: an item's tier is the band of the catalog's interactions it falls in when
# items are taken most popular first (the head: the items that together draw the first 20%).
POPULARITY_SHARES = (0.2, 0.5, 0.8)


def popularity_edges(popularity: np.ndarray,
                     cumulative: tuple[float, ...] = POPULARITY_SHARES) -> tuple[float, ...]:
    """Edges on ranking's ``ItemStats.popularity`` (log1p of training interactions) between
    the tiers ``unseen`` (no interaction), ``tail``, ``mid``, ``upper`` and ``head``.

    Items are sorted most popular first; the item at which the running share of interactions
    reaches 20% (50%, 80%) sets the edge, at its own popularity value: it and every item at
    least as popular are in the tier above. The values are the stored float32 ones, so the
    server, binning the same array, puts each item in the tier training did.
    """
    pop = np.asarray(popularity, dtype=np.float64)
    counts = np.rint(np.expm1(pop))
    seen = pop[counts > 0]
    if not len(seen):
        return ()
    order = np.argsort(-pop, kind="stable")
    running = np.cumsum(counts[order]) / counts.sum()
    cuts = [float(pop[order][np.searchsorted(running, share)]) for share in cumulative]
    edges = sorted({float(seen.min()), *cuts})
    return tuple(edges)


def drift_references(models: RetrievalModels, pipeline: RankingPipeline, users: np.ndarray,
                     k: int = REFERENCE_K) -> tuple[Reference, Reference]:
    """(retrieval's reference, ranking's) from serving each of ``users`` once."""
    source = models.source()
    names = tuple(models.generators)
    sources = np.zeros(len(names), dtype=np.int64)
    segments = dict.fromkeys(SEGMENTS, 0)
    scores: list[np.ndarray] = []
    popularity: list[np.ndarray] = []
    stats = pipeline.stats
    for user in np.asarray(users, dtype=np.int64).tolist():
        cands = candidates_for(models, source, user)
        sources += source_counts(cands, names)
        segments[cands.segment] = segments.get(cands.segment, 0) + 1
        if len(cands):
            pos, served, _ = pipeline.rank(cands, k)
            scores.append(np.asarray(served, dtype=np.float64))
            popularity.append(stats.popularity[cands.items[pos]].astype(np.float64))
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    all_pop = np.concatenate(popularity) if popularity else np.zeros(0)
    sample = {"users": int(len(users)), "k": int(k)}
    retrieval = Reference({
        SOURCES: Distribution.categorical(
            names, sources, "share of candidate slots proposed by each generator (an item "
                            "two generators proposed counts for both)"),
        SEGMENT: Distribution.categorical(
            SEGMENTS, [segments[s] for s in SEGMENTS], "share of requests by user segment"),
    }, sample)
    edges = popularity_edges(stats.popularity)
    ranking = Reference({
        SCORE: Distribution.quantiles(
            all_scores, 10, f"scores of the top {k} items returned, cut at the reference's "
                            "deciles"),
        POPULARITY: Distribution.numeric(
            all_pop, edges, f"top {k} items returned by popularity tier, from unseen (no "
                            "training interaction) through tail, mid and upper to head (the "
                            "most popular items, drawing the first 20% of training "
                            "interactions; upper the next 30%, mid the next 30%, tail the "
                            "rest); tiers that coincide are merged"),
    }, sample)
    return retrieval, ranking


def reference_users(models: RetrievalModels, seed: int,
                    max_users: int = REFERENCE_USERS) -> np.ndarray:
    """A seeded sample of the users the version knows (those with a stored history)."""
    known = np.flatnonzero(np.diff(models.history.indptr) > 0)
    if len(known) > max_users:
        known = np.sort(np.random.default_rng(seed).choice(known, max_users, replace=False))
    return known
