"""Peer baselines for the offline leaderboard: EASE and a tuned ALS, with validation tuning.

Both are plain numpy/scipy over a binary users x items matrix (every event counts 1, as in
``training.models``) and do no I/O. Tuning only ever sees the ``train`` and ``valid`` events
it is given: the caller carves ``valid`` out of the training part (e.g. each user's
next-to-last item via ``split.holdout_last``), so test data cannot leak into the choice.

The EASE model itself is retrieval's (``shortlist.retrieval.ease``): the peer and the EASE
generator are the same math.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from shortlist.retrieval.als import AlsModel
from shortlist.retrieval.ease import MAX_ITEMS, Ease, EaseTooLarge, skipped  # noqa: F401
from shortlist.retrieval.hnsw import exact_top_k
from shortlist.training.metrics import ndcg_at_k
from shortlist.training.split import Events

DEFAULT_LAMS = (10.0, 30.0, 100.0, 200.0, 300.0, 500.0, 1000.0, 3000.0)
# 36 fits, ~70 s single-threaded on ml-latest-small. On both MovieLens sets alpha = 1 with
# many factors did best on validation, and regularization 100 with alpha 20 came close.
DEFAULT_ALS_GRID: dict[str, tuple] = {
    "factors": (64, 128, 256),
    "regularization": (0.1, 1.0, 10.0, 100.0),
    "alpha": (1.0, 5.0, 20.0),
    "iterations": (15,),
}

# (user, k, exclude mask) -> ranked item indices, or (items, scores)
RecommendFn = Callable[[int, int, np.ndarray], "np.ndarray | tuple[np.ndarray, np.ndarray]"]


def interaction_matrix(ev: Events, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary users x items float32 matrix: 1 where the user has any event with the item."""
    m = sp.csr_matrix((np.ones(len(ev), np.float32), (ev.users, ev.items)),
                      shape=(n_users, n_items), dtype=np.float32)
    m.data[:] = 1.0  # duplicate (user, item) events were summed
    return m


def als_recommender(model: AlsModel) -> RecommendFn:
    """Exact ALS recommendations: user_factors[u] @ item_factors.T, best first."""

    def recommend(user: int, k: int,
                  exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        s = model.item_factors @ model.user_factors[user]
        if exclude is not None:
            s[np.asarray(exclude, dtype=bool)] = -np.inf
        top = exact_top_k(s, k)
        top = top[np.isfinite(s[top])]
        return top, s[top]

    return recommend


def _by_user(ev: Events) -> dict[int, np.ndarray]:
    order = np.lexsort((ev.items, ev.users))
    users, items = ev.users[order], ev.items[order]
    bounds = np.flatnonzero(np.diff(users)) + 1
    return {int(u[0]): i for u, i in zip(np.split(users, bounds), np.split(items, bounds),
                                          strict=True) if len(u)}


def score_users(recommend_fn: RecommendFn, train: Events, valid: Events, k: int = 10,
                n_items: int | None = None) -> float:
    """Mean NDCG@k over the users in ``valid``: each user's held-out items are the relevant
    set, and every item in their ``train`` history is excluded from the ranking."""
    if n_items is None:
        n_items = int(max(train.items.max(initial=-1), valid.items.max(initial=-1))) + 1
    seen = _by_user(train)
    relevant = _by_user(valid)
    total = 0.0
    for user in sorted(relevant):
        exclude = np.zeros(n_items, dtype=bool)
        exclude[seen.get(user, np.zeros(0, np.int64))] = True
        ranked = recommend_fn(user, k, exclude)
        if isinstance(ranked, tuple):
            ranked = ranked[0]
        total += ndcg_at_k(np.asarray(ranked), set(relevant[user].tolist()), k)
    return total / max(1, len(relevant))


def tune_ease(train: Events, valid: Events, n_users: int, n_items: int,
              lams: Iterable[float] = DEFAULT_LAMS,
              k: int = 10) -> tuple[float, list[dict[str, float]]]:
    """λ with the best validation NDCG@k (ties: the first in ``lams``) and the full table."""
    x = interaction_matrix(train, n_users, n_items)
    table: list[dict[str, float]] = []
    for lam in lams:
        model = Ease().fit(x, lam)
        table.append({"lam": float(lam),
                      f"ndcg@{k}": score_users(model.recommend, train, valid, k, n_items)})
        del model
    if not table:
        raise ValueError("empty λ grid")
    best = max(table, key=lambda row: row[f"ndcg@{k}"])
    return best["lam"], table


def als_grid(grid: Mapping[str, Sequence] | Sequence[Mapping] | None = None) -> list[dict]:
    """Expand a {param: values} grid (cartesian product) or pass a list of param dicts."""
    grid = DEFAULT_ALS_GRID if grid is None else grid
    if isinstance(grid, Mapping):
        keys = list(grid)
        return [dict(zip(keys, combo, strict=True))
                for combo in itertools.product(*(grid[key] for key in keys))]
    return [dict(g) for g in grid]


def tune_als(train: Events, valid: Events, n_users: int, n_items: int,
             grid: Mapping[str, Sequence] | Sequence[Mapping] | None = None, k: int = 10,
             seed: int = 42) -> tuple[dict, list[dict]]:
    """AlsModel parameters (factors, regularization, alpha, iterations) with the best
    validation NDCG@k (ties: the first in the grid) and one table row per combination."""
    x = interaction_matrix(train, n_users, n_items)
    table: list[dict] = []
    for params in als_grid(grid):
        model = AlsModel(**params, seed=seed).fit(x)
        ndcg = score_users(als_recommender(model), train, valid, k, n_items)
        table.append({**params, f"ndcg@{k}": ndcg})
    if not table:
        raise ValueError("empty ALS grid")
    best = max(table, key=lambda row: row[f"ndcg@{k}"])
    return {key: v for key, v in best.items() if key != f"ndcg@{k}"}, table
