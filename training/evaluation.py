"""Offline evaluation of every stage on held-out items, with the serving code paths."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from shortlist.common.candidates import Candidates
from shortlist.common.threads import map_in_order
from shortlist.ranking.features import ItemStats
from shortlist.ranking.pipeline import RANKER, RankingPipeline
from shortlist.retrieval.bundle import RetrievalModels, banned_mask
from shortlist.retrieval.candidates import CandidateSource
from shortlist.retrieval.hnsw import exact_top_k
from shortlist.training.metrics import (
    ap_at_k,
    hit_at_k,
    intra_list_distance,
    ndcg_at_k,
    novelty,
    recall_at_k,
)
from shortlist.training.offline import candidates_for
from shortlist.training.split import Events

Recommender = Callable[[int, np.ndarray], np.ndarray]  # (user, banned mask) -> item indices
UNION = "candidates_union"


def recommenders(models: RetrievalModels, stats: ItemStats,
                 pipeline: RankingPipeline | None, k: int, seed: int = 42
                 ) -> dict[str, Recommender]:
    """Every stage of the pipeline as a stand-alone recommender, plus random and popularity:
    each generator alone (by its registry name), the merged candidates and the pipeline."""
    source = models.source()

    def random(user, banned):
        # seeded per user: the same list whichever thread asks, and in whatever order
        allowed = np.flatnonzero(~banned)
        return np.random.default_rng((seed, user)).choice(allowed, min(k, len(allowed)),
                                                          replace=False)

    def popularity(user, banned):
        s = stats.popularity.astype(np.float64).copy()
        s[banned] = -np.inf
        return exact_top_k(s, k)

    def alone(gen):
        def run(user, banned):
            return gen.propose(models.user_state(user), k, banned)[0]
        return run

    # One user's candidates and ranker scores per thread: a thread asks for every row of one
    # user before it moves on to the next (``evaluate``), so one entry each is enough.
    local = threading.local()

    def cands_of(user: int) -> Candidates:
        """The user's candidates, generated once for the union and the ranked rows."""
        if getattr(local, "user", None) != user:
            local.user, local.scores = user, None
            local.cands = candidates_for(models, source, user)
        return local.cands

    def union(user, banned):  # the whole merged candidate list, in retrieval (RRF) order
        return cands_of(user).items

    out: dict[str, Recommender] = {"random": random, "popularity": popularity}
    for name, gen in models.generators.items():
        out[name] = alone(gen)
    out[UNION] = union
    if pipeline is not None:
        def scores_of(user: int) -> np.ndarray:
            """The ranker's scores of the user's candidates, once for the ranked rows."""
            cands = cands_of(user)
            if local.scores is None:
                local.scores = pipeline.score(cands)
            return local.scores

        def ranked(lam, order):
            def run(user, banned):
                cands = cands_of(user)
                by_ranker = (order or pipeline.config.order) == RANKER
                pos, _, _ = pipeline.rank(cands, k, lam, order,
                                          scores=scores_of(user) if by_ranker else None)
                return cands.items[pos]
            return run
        out["ranker"] = ranked(1.0, RANKER)
        out["ranker_mmr"] = ranked(None, RANKER)
        out["pipeline"] = ranked(None, None)  # the configuration that is served
    return out


def evaluate(models: RetrievalModels, stats: ItemStats, pipeline: RankingPipeline | None,
             test: Events, k: int = 10, progress: bool = True,
             extra: dict[str, Recommender] | None = None,
             only: set[str] | None = None,
             per_user: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """Mean metrics@k per recommender over the users in ``test``.

    ``per_user``, when given, receives each recommender's NDCG@k per user (users in the same
    order for every recommender), for paired comparisons of two recommenders.

    Besides accuracy: catalog coverage (share of items recommended to anyone), intra-list
    diversity (mean pairwise content distance in a list) and novelty (mean self-information).
    The candidate union also reports recall over the whole candidate list.
    """
    relevant: dict[int, set[int]] = {}
    for u, i in zip(test.users.tolist(), test.items.tolist(), strict=True):
        relevant.setdefault(u, set()).add(i)
    recs = {**recommenders(models, stats, pipeline, k), **(extra or {})}
    if only is not None:
        recs = {name: r for name, r in recs.items() if name in only}
    n_items = len(models.catalog)
    item_users = np.rint(np.expm1(stats.popularity)).astype(np.int64)
    n_users = len(models.users)
    diversity = stats.diversity if stats.diversity_space else None
    sums = {name: np.zeros(6) for name in recs}
    user_ndcg = {name: np.zeros(len(relevant)) for name in recs}
    shown = {name: np.zeros(n_items, dtype=bool) for name in recs}
    union_recall = 0.0

    def lists_of(user: int) -> list[np.ndarray]:
        items, _, _ = models.history.events(user)
        banned = banned_mask(n_items, items)
        return [np.asarray(rec(user, banned), dtype=np.int64) for rec in recs.values()]

    users = sorted(relevant)
    # Users on FIT_THREADS threads (generators' searches and the ranker release the GIL),
    # their metrics summed in user order: the same means as one thread's.
    lists = map_in_order(lists_of, users)
    for position, (user, fulls) in enumerate(tqdm(zip(users, lists, strict=True),
                                                  total=len(users), desc="evaluate",
                                                  unit="user", disable=not progress,
                                                  leave=False)):
        rel = relevant[user]
        for name, full in zip(recs, fulls, strict=True):
            if name == UNION:
                union_recall += recall_at_k(full, rel, len(full))
            ranked = full[:k]
            shown[name][ranked] = True
            ild = intra_list_distance(diversity[ranked]) if diversity is not None else 0.0
            user_ndcg[name][position] = ndcg = ndcg_at_k(ranked, rel, k)
            sums[name] += (ndcg, recall_at_k(ranked, rel, k),
                           hit_at_k(ranked, rel, k), ap_at_k(ranked, rel, k), ild,
                           novelty(ranked, item_users, n_users))
    n = max(1, len(relevant))
    out = {}
    for name, s in sums.items():
        out[name] = {f"recall@{k}": s[1] / n, f"ndcg@{k}": s[0] / n, f"map@{k}": s[3] / n,
                     f"hr@{k}": s[2] / n, "coverage": float(shown[name].mean()),
                     "ild": s[4] / n if diversity is not None else None,
                     "novelty": s[5] / n,
                     "users": len(relevant)}
    if per_user is not None:
        per_user.update(user_ndcg)
    if UNION in out:
        out[UNION]["recall@candidates"] = union_recall / n
        out[UNION]["candidates"] = models.config.max_candidates
    return out


def candidate_recall(models: RetrievalModels, test: Events) -> float:
    """Mean recall of the served candidate list (all generators, merged) on ``test``'s items:
    the most the ranker could find."""
    relevant: dict[int, set[int]] = {}
    for u, i in zip(test.users.tolist(), test.items.tolist(), strict=True):
        relevant.setdefault(u, set()).add(i)
    n, source, total = models.config.max_candidates, models.source(), 0.0
    for user in sorted(relevant):
        state = models.user_state(user)
        items = source.generate(state, banned_mask(len(models.catalog), state.items),
                                max_candidates=n).items
        total += recall_at_k(items, relevant[user], n)
    return total / max(1, len(relevant))


def candidate_ablation(models: RetrievalModels, test: Events,
                       progress: bool = True) -> list[dict]:
    """Candidate recall at the served candidate count N with every generator, and with each
    one left out while the others, asked for proportionally more, fill the same N.

    This is what a generator adds to the pool the ranker chooses from, at equal cost: a
    generator that only repeats the others' items scores no loss when removed, whatever its
    own recall. Run with the serving code (``CandidateSource.generate``) on the test users.
    """
    relevant: dict[int, set[int]] = {}
    for u, i in zip(test.users.tolist(), test.items.tolist(), strict=True):
        relevant.setdefault(u, set()).add(i)
    n = models.config.max_candidates
    full = models.source()
    sources: dict[str, CandidateSource] = {"(none)": full}
    for name, gen in models.generators.items():
        share = gen.config.candidates
        if len(models.generators) < 2 or share >= n:
            continue
        others = {g: x for g, x in models.generators.items() if g != name}
        sources[name] = CandidateSource(others, models.config, scale=n / (n - share))
    sums = dict.fromkeys(sources, 0.0)
    for user in tqdm(sorted(relevant), desc="candidate ablation", unit="user",
                     disable=not progress, leave=False):
        state = models.user_state(user)
        banned = banned_mask(len(models.catalog), state.items)
        for name, source in sources.items():
            items = source.generate(state, banned, max_candidates=n).items
            sums[name] += recall_at_k(items, relevant[user], n)
    users = max(1, len(relevant))
    base = sums["(none)"] / users
    return [{"removed": name, "candidates": n, "recall": total / users,
             "delta": total / users - base} for name, total in sums.items()]
