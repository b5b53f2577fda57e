"""Offline evaluation of every stage on held-out items, with the serving code paths."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from ranking.features import ItemStats
from ranking.pipeline import RankingPipeline
from retrieval.bundle import RetrievalModels, banned_mask
from retrieval.hnsw import exact_top_k
from training.metrics import ap_at_k, hit_at_k, ndcg_at_k, recall_at_k
from training.offline import candidates_for, to_ranking_input
from training.split import Events

Recommender = Callable[[int, np.ndarray], np.ndarray]  # (user, banned mask) -> item indices


def recommenders(models: RetrievalModels, stats: ItemStats,
                 pipeline: RankingPipeline | None, k: int) -> dict[str, Recommender]:
    gen = models.generator()

    def popularity(user, banned):
        s = stats.popularity.astype(np.float64).copy()
        s[banned] = -np.inf
        return exact_top_k(s, k)

    def trending(user, banned):
        return models.trending.top(k, banned)[0]

    def als(user, banned):
        items, _, _ = models.history.events(user)
        vec = gen.als_vector(user, items, True)
        if vec is None or models.als is None:
            return np.zeros(0, np.int64)
        return gen.search(models.als_index, models.als.item_factors, vec, k, banned)[0]

    def content(user, banned):
        items, stamps, _ = models.history.events(user)
        taste = gen.taste_vector(items, stamps)
        if taste is None or models.content is None:
            return np.zeros(0, np.int64)
        return gen.search(models.content_index, models.content.vectors, taste, k, banned)[0]

    def retrieval(user, banned):
        return candidates_for(models, gen, user).items[:k]

    out: dict[str, Recommender] = {"popularity": popularity, "trending": trending}
    if models.als is not None:
        out["als"] = als
    if models.content is not None:
        out["content"] = content
    out["retrieval_rrf"] = retrieval
    if pipeline is not None:
        def ranked(lam):
            def run(user, banned):
                cands = candidates_for(models, gen, user)
                pos, _, _ = pipeline.rank(to_ranking_input(cands), k, lam)
                return cands.items[pos]
            return run
        out["pipeline"] = ranked(1.0)
        out["pipeline_mmr"] = ranked(None)
    return out


def evaluate(models: RetrievalModels, stats: ItemStats, pipeline: RankingPipeline | None,
             test: Events, k: int = 10, progress: bool = True) -> dict[str, dict[str, float]]:
    """Mean metrics@k per recommender over the users in ``test``."""
    relevant: dict[int, set[int]] = {}
    for u, i in zip(test.users.tolist(), test.items.tolist(), strict=True):
        relevant.setdefault(u, set()).add(i)
    recs = recommenders(models, stats, pipeline, k)
    sums = {name: np.zeros(4) for name in recs}
    n_items = len(models.catalog)
    for user in tqdm(sorted(relevant), desc="evaluate", unit="user", disable=not progress):
        items, _, _ = models.history.events(user)
        banned = banned_mask(n_items, items)
        rel = relevant[user]
        for name, rec in recs.items():
            ranked = rec(user, banned)
            sums[name] += (ndcg_at_k(ranked, rel, k), recall_at_k(ranked, rel, k),
                           hit_at_k(ranked, rel, k), ap_at_k(ranked, rel, k))
    n = max(1, len(relevant))
    return {
        name: {f"ndcg@{k}": s[0] / n, f"recall@{k}": s[1] / n, f"hr@{k}": s[2] / n,
               f"map@{k}": s[3] / n, "users": len(relevant)}
        for name, s in sums.items()
    }
