"""Cold start measured on users held out entirely: what a brand-new user is served.

The leaderboard's users all have training history; this asks the other question. Users are
removed from the data a fold at a time (every event), the generators that serve new users are
fitted on the rest with the values tuning chose, and each held-out user is served as a new user
who gives only their attributes (as a ``Recommend`` with ``user_attributes`` would be). Their
whole history is what they went on to like: NDCG@10 and recall@10 against it, per generator
and for the merged order retrieval serves such a user.
"""

from __future__ import annotations

import numpy as np

from shortlist.common.attributes import UserData
from shortlist.common.catalog import ItemCatalog
from shortlist.common.vocab import Vocabulary
from shortlist.retrieval.bundle import banned_mask
from shortlist.retrieval.generators import Registry
from shortlist.retrieval.hnsw import exact_top_k
from shortlist.training.fit import paired_margin
from shortlist.training.metrics import ndcg_at_k, recall_at_k
from shortlist.training.models import fit_models
from shortlist.training.params import FitParams
from shortlist.training.split import Events

MERGED = "new_user_candidates"
POPULARITY = "popularity"


def cold_folds(ev: Events, folds: int, min_items: int, seed: int) -> list[np.ndarray]:
    """The users with at least ``min_items`` events, shuffled (seeded) into ``folds`` groups."""
    counts = np.bincount(ev.users)
    eligible = np.random.default_rng(seed).permutation(np.flatnonzero(counts >= min_items))
    return [np.sort(part) for part in np.array_split(eligible, folds) if len(part)]


def evaluate_cold_start(ev: Events, users: Vocabulary, catalog: ItemCatalog,
                        about_users: UserData, p: FitParams, registry: Registry,
                        folds: int = 5, k: int = 10) -> dict:
    """Each new-user generator alone, plain popularity and their merged order, on every
    eligible user held out in turn (``folds`` fits of the cheap new-user generators, so each
    user is scored once, from a model that never saw them)."""
    attributes = about_users.attributes
    cold_registry = Registry([cls for cls in registry if cls.serves_new_users])
    ndcg: dict[str, list[float]] = {}
    recall: dict[str, list[float]] = {}
    banned = banned_mask(len(catalog), [])
    for held in cold_folds(ev, folds, p.min_user_items, p.seed + 7):
        out = np.isin(ev.users, held)
        train = ev.take(~out)
        models, _ = fit_models(train, users, catalog, p, cold_registry,
                               user_data=about_users)
        popular = exact_top_k(np.bincount(train.items, minlength=len(catalog)).astype(float),
                              k)
        source = models.source()
        test = ev.take(out)
        relevant: dict[int, set[int]] = {}
        for u, i in zip(test.users.tolist(), test.items.tolist(), strict=True):
            relevant.setdefault(u, set()).add(i)
        for user in sorted(relevant):
            # A new user: no index, no history; only what they say about themselves.
            state = models.user_state(-1, attributes=attributes.of(user))
            lists = {name: gen.propose(state, k, banned)[0]
                     for name, gen in models.generators.items()}
            lists[POPULARITY] = popular
            lists[MERGED] = source.generate(state, banned).items[:k]
            for name, top in lists.items():
                ndcg.setdefault(name, []).append(ndcg_at_k(top, relevant[user], k))
                recall.setdefault(name, []).append(recall_at_k(top, relevant[user], k))
    rows = [{"model": name, f"ndcg@{k}": float(np.mean(ndcg[name])),
             f"recall@{k}": float(np.mean(recall[name]))} for name in ndcg]
    report = {"users": len(next(iter(ndcg.values()), [])), "folds": folds, "k": k,
              "rows": rows, "attributes": list(attributes.columns)}
    if "demographic" in ndcg and "trending" in ndcg:
        report["demographic_vs_trending"] = paired_margin(np.asarray(ndcg["demographic"]),
                                                          np.asarray(ndcg["trending"]))
    return report
