"""Peer baselines: EASE's closed form, validation tuning, and reproducibility from an export."""

from __future__ import annotations

import csv
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from shortlist.common.catalog import ItemCatalog
from shortlist.common.vocab import Vocabulary
from shortlist.training.datasets import load
from shortlist.training.peers import (
    MAX_ITEMS,
    Ease,
    EaseTooLarge,
    als_grid,
    interaction_matrix,
    score_users,
    skipped,
    tune_als,
    tune_ease,
)
from shortlist.training.protocol import export_split, holdout_mask
from shortlist.training.split import Events, encode, holdout_last


def closed_form(x: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(P, B) straight from the paper's formula, in float64."""
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return p, b


@pytest.fixture(scope="module")
def split(synthetic_dir):
    """Synthetic data split like the leaderboard: test = last item, valid = next-to-last."""
    ds = load(str(synthetic_dir))
    catalog = ItemCatalog(ds.items.item_ids, ds.items.titles, ds.items.categories)
    users, ev = encode(ds, catalog.vocab)
    test_mask = holdout_mask(ev, "leave-last-out", ds.has_timestamps)
    train, test = ev.take(~test_mask), ev.take(test_mask)
    valid_mask = holdout_last(train, 1, 5)
    return {"users": users, "catalog": catalog, "train": train, "test": test,
            "inner": train.take(~valid_mask), "valid": train.take(valid_mask)}


@pytest.mark.parametrize("method", ["cholesky", "woodbury", "auto"])
def test_ease_matches_closed_form_on_4x4(method):
    x = np.array([[1, 1, 0, 0],
                  [1, 0, 1, 0],
                  [0, 1, 1, 1],
                  [1, 1, 1, 0],
                  [0, 0, 1, 1]], dtype=np.float64)
    lam = 2.0
    model = Ease().fit(sp.csr_matrix(x), lam, method=method)
    p, b = closed_form(x, lam)
    b_model = model.weights.astype(np.float64)
    assert b_model.shape == (4, 4) and model.weights.dtype == np.float32
    assert np.all(np.diag(b_model) == 0.0)
    off = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(b_model[off], (-p / np.diag(p))[off], rtol=1e-6)
    np.testing.assert_allclose(b_model, b, rtol=1e-6, atol=1e-7)
    # Independent of the formula: B solves min |X - XB|² + λ|B|² s.t. diag(B) = 0, whose
    # stationarity condition is that (XᵀX + λI)B - XᵀX vanishes off the diagonal.
    g = x.T @ x
    resid = (g + lam * np.eye(4)) @ b_model - g
    np.testing.assert_allclose(resid[off], 0.0, atol=1e-5)
    np.testing.assert_allclose(model.scores([2])[0], x[2] @ b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(40, 90), (120, 50)])
def test_cholesky_and_woodbury_agree(shape):
    rng = np.random.default_rng(3)
    x = (rng.random(shape) < 0.1).astype(np.float32)  # may leave empty columns
    _, b = closed_form(x.astype(np.float64), 5.0)
    for method in ("cholesky", "woodbury"):
        model = Ease().fit(sp.csr_matrix(x), 5.0, method=method)
        np.testing.assert_allclose(model.weights, b, rtol=1e-5, atol=1e-6)


def test_binarises_input_and_interaction_matrix_is_binary():
    ev = Events(np.array([0, 0, 0, 1]), np.array([2, 2, 1, 0]), np.arange(4),
                np.array([5, 3, 2, 0.5], np.float32))
    m = interaction_matrix(ev, 3, 4)
    assert m.shape == (3, 4) and m.dtype == np.float32
    assert m.toarray().tolist() == [[0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    weighted = sp.csr_matrix(np.array([[3.0, 0, 2], [0, 5, 1], [1, 1, 0]]))
    a = Ease().fit(weighted, 1.0).weights
    b = Ease().fit((weighted > 0).astype(np.float32), 1.0).weights
    np.testing.assert_array_equal(a, b)


def block_matrix() -> sp.csr_matrix:
    """Users 0-9 take items 0-4 (each misses one), users 10-19 take items 5-9 likewise."""
    rows, cols = [], []
    for u in range(20):
        block = range(0, 5) if u < 10 else range(5, 10)
        for i in block:
            if i % 5 != u % 5:
                rows.append(u)
                cols.append(i)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(20, 10))


def test_ease_recommends_co_occurring_items_first():
    x = block_matrix()
    model = Ease().fit(x, 1.0)
    seen = x[0].toarray()[0] > 0  # user 0 has items 1-4
    items, scores = model.recommend(0, 5, seen)
    assert items[0] == 0  # the one block item they have not seen
    assert set(items[1:].tolist()) <= set(range(5, 10))
    assert np.all(np.diff(scores) <= 0)
    # new users: rows of a matrix; the same as a fitted user with the same history
    row = sp.csr_matrix(([1.0, 1.0], ([0, 0], [6, 7])), shape=(1, 10))
    s = model.scores(row)[0]
    assert set(np.argsort(-s)[:3].tolist()) <= set(range(5, 10))
    np.testing.assert_array_equal(model.scores(x[[3, 12]]), model.scores([3, 12]))


def test_exclusion_mask_is_respected():
    model = Ease().fit(block_matrix(), 1.0)
    exclude = np.zeros(10, dtype=bool)
    exclude[[0, 1, 2, 7]] = True
    items, scores = model.recommend(0, 10, exclude)
    assert not set(items.tolist()) & {0, 1, 2, 7}
    assert len(items) == 6 and np.all(np.isfinite(scores))  # k beyond what is left
    top, _ = model.recommend(0, 3)
    assert len(top) == 3


def test_size_guard_refuses_without_allocating():
    assert skipped(MAX_ITEMS) is None
    reason = skipped(MAX_ITEMS + 1)
    assert reason and str(MAX_ITEMS + 1) in reason
    assert skipped(50, max_items=40)
    huge = sp.csr_matrix(([1.0, 1.0], ([0, 1], [0, MAX_ITEMS])), shape=(2, MAX_ITEMS + 1))
    tracemalloc.start()
    try:
        with pytest.raises(EaseTooLarge):
            Ease().fit(huge, 100.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # B alone would be 3.6 GB
    with pytest.raises(ValueError):
        Ease().fit(block_matrix(), 0.0)


def test_score_users_excludes_training_items_and_scores_valid():
    train = Events(np.array([0, 0, 1]), np.array([0, 1, 2]), np.arange(3), np.ones(3, np.float32))
    valid = Events(np.array([0, 1]), np.array([3, 0]), np.arange(2), np.ones(2, np.float32))
    masks = {}

    def fake(user, k, exclude):
        masks[user] = np.flatnonzero(exclude).tolist()
        return np.array([3, 0]) if user == 0 else np.array([1, 3, 0])

    ndcg = score_users(fake, train, valid, k=10, n_items=5)
    assert masks == {0: [0, 1], 1: [2]}
    assert ndcg == pytest.approx((1.0 + 1.0 / np.log2(4)) / 2)


def test_tune_ease_uses_the_grid_and_only_validation(split):
    n_users, n_items = len(split["users"]), len(split["catalog"])
    lams = (1.0, 20.0, 400.0)
    best, table = tune_ease(split["inner"], split["valid"], n_users, n_items, lams=lams)
    assert [row["lam"] for row in table] == list(lams)
    assert best in lams
    assert best == max(table, key=lambda row: row["ndcg@10"])["lam"]
    assert all(0.0 < row["ndcg@10"] <= 1.0 for row in table)
    # every row is the validation score of a model fitted on train only
    model = Ease().fit(interaction_matrix(split["inner"], n_users, n_items), best)
    on_valid = score_users(model.recommend, split["inner"], split["valid"], 10, n_items)
    assert on_valid == max(row["ndcg@10"] for row in table)


def test_tune_als_returns_grid_params_and_table(split):
    n_users, n_items = len(split["users"]), len(split["catalog"])
    grid = {"factors": (8, 16), "regularization": (0.1,), "alpha": (1.0, 10.0),
            "iterations": (4,)}
    best, table = tune_als(split["inner"], split["valid"], n_users, n_items, grid)
    assert len(table) == 4
    assert best in als_grid(grid)
    assert set(table[0]) == {"factors", "regularization", "alpha", "iterations", "ndcg@10"}
    assert all(0.0 <= row["ndcg@10"] <= 1.0 for row in table)
    assert max(row["ndcg@10"] for row in table) > 0.05  # genre structure is easy to find
    assert als_grid([{"factors": 4}]) == [{"factors": 4}]
    assert len(als_grid()) == len(als_grid(None)) >= 4


def read_split_csv(path: Path, users: Vocabulary, items: Vocabulary) -> Events:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return Events(np.array([users.add(r["user_id"]) for r in rows], np.int64),
                  np.array([items.add(r["item_id"]) for r in rows], np.int64),
                  np.array([int(r["timestamp"]) for r in rows], np.int64),
                  np.array([float(r["weight"]) for r in rows], np.float32))


def test_exported_split_reproduces_ease_exactly(split, tmp_path):
    """What an outsider gets from `--export-split` CSVs alone equals the in-memory number."""
    n_users, n_items = len(split["users"]), len(split["catalog"])
    lam = 50.0
    model = Ease().fit(interaction_matrix(split["train"], n_users, n_items), lam)
    in_memory = score_users(model.recommend, split["train"], split["test"], 10, n_items)

    export_split(tmp_path, split["users"], split["catalog"], split["train"], split["test"])
    users, items = Vocabulary(), Vocabulary()  # fresh first-seen indices, no catalog
    train = read_split_csv(tmp_path / "interactions.csv", users, items)
    test = read_split_csv(tmp_path / "test.csv", users, items)
    assert len(train) == len(split["train"]) and len(test) == len(split["test"])
    reloaded = Ease().fit(interaction_matrix(train, len(users), len(items)), lam)
    from_csv = score_users(reloaded.recommend, train, test, 10, len(items))
    assert from_csv == in_memory
    assert in_memory > 0.1
