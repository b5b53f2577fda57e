"""ItemKNN and EASE generators: known neighbours on a tiny matrix, and the serving contract."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from shortlist.common.catalog import ItemCatalog
from shortlist.retrieval.generators import EaseGenerator, FitData, ItemKnnGenerator, UserState
from shortlist.retrieval.generators.itemitem import (
    EaseConfig,
    ItemKnnConfig,
    top_per_row,
    top_per_row_sparse,
)
from shortlist.retrieval.weights import confidence
from shortlist.training.split import Events


def data(pairs, n_users: int, n_items: int, weights=None) -> FitData:
    users = np.array([u for u, _ in pairs], np.int64)
    items = np.array([i for _, i in pairs], np.int64)
    w = np.ones(len(pairs), np.float32) if weights is None else np.asarray(weights, np.float32)
    ev = Events(users, items, np.zeros(len(pairs), np.int64), w)
    catalog = ItemCatalog([f"i{i}" for i in range(n_items)], [f"t{i}" for i in range(n_items)],
                          [[] for _ in range(n_items)])
    return FitData(ev, n_users, catalog, 0)


# Items 0 and 1 are always taken together, 2 and 3 together, 4 by itself.
PAIRS = [(u, i) for u in range(6) for i in ((0, 1) if u < 3 else (2, 3))] + [(5, 4)]


def state(items, weights=None) -> UserState:
    items = np.asarray(items, np.int64)
    w = np.ones(len(items), np.float32) if weights is None else np.asarray(weights, np.float32)
    return UserState.of(0, items, np.zeros(len(items), np.int64), w, np.zeros(0, np.int64), 0)


def test_itemknn_neighbours_are_the_co_occurring_items():
    gen = ItemKnnGenerator.fit(data(PAIRS, 6, 5), ItemKnnConfig(neighbours=2, shrinkage=0.0))
    w = gen.weights.toarray()
    assert w[0, 1] == pytest.approx(1.0) and w[2, 3] == pytest.approx(1.0)
    assert w[0, 2] == 0 and np.all(np.diag(w) == 0)
    banned = np.zeros(5, bool)
    banned[0] = True
    ids, scores = gen.propose(state([0]), 3, banned)
    assert ids.tolist() == [1]  # only items with a neighbour of the history are proposed
    assert scores.tolist() == pytest.approx([1.0])
    np.testing.assert_allclose(gen.affinity(state([0]), np.array([1, 2, 4])), [1.0, 0, 0])


def test_shrinkage_lowers_pairs_with_few_users_in_common():
    plain = ItemKnnGenerator.fit(data(PAIRS, 6, 5), ItemKnnConfig(shrinkage=0.0)).weights
    shrunk = ItemKnnGenerator.fit(data(PAIRS, 6, 5), ItemKnnConfig(shrinkage=3.0)).weights
    assert shrunk[0, 1] == pytest.approx(plain[0, 1] * 3 / (3 + 3))


def test_history_strengths_follow_the_confidence_transform():
    pairs = [(0, 0), (0, 2), (1, 0), (1, 1), (2, 2), (2, 3)]
    gen = ItemKnnGenerator.fit(data(pairs, 3, 4), ItemKnnConfig(shrinkage=0.0,
                                                                 confidence="log1p"))
    user = state([0, 2], weights=[1.0, 20.0])
    items, scores = gen.scores(user)
    w = gen.weights.toarray()
    expected = np.log1p(1.0) * w[0] + np.log1p(20.0) * w[2]
    assert items.tolist() == np.flatnonzero(expected).tolist()  # only items with a score
    np.testing.assert_allclose(scores, expected[items], rtol=1e-6)
    np.testing.assert_allclose(gen.affinity(user, np.arange(4)), expected, rtol=1e-6)
    assert confidence(np.array([0, -1, 3]), "binary").tolist() == [0, 0, 1]


def test_ease_generator_matches_the_dense_model_on_its_kept_weights():
    rng = np.random.default_rng(0)
    pairs = sorted({(int(u), int(i)) for u, i in zip(rng.integers(0, 30, 200),
                                                       rng.integers(0, 12, 200),
                                                       strict=True)})
    gen = EaseGenerator.fit(data(pairs, 30, 12), EaseConfig(lam=5.0, neighbours=12))
    from shortlist.retrieval.ease import Ease
    from shortlist.training.peers import interaction_matrix

    d = data(pairs, 30, 12)
    dense = Ease().fit(interaction_matrix(d.events, 30, 12), 5.0)
    np.testing.assert_allclose(gen.weights.toarray(), dense.weights, rtol=1e-5, atol=1e-6)


def test_ease_is_skipped_above_its_item_limit(caplog):
    gen = EaseGenerator.fit(data(PAIRS, 6, 5), EaseConfig(max_items=4))
    assert gen is None
    assert "max_items" in caplog.text


def test_top_per_row_keeps_the_largest_by_magnitude():
    dense = np.array([[0.1, -0.9, 0.5], [0.0, 0.2, 0.0]])
    rows, cols, vals = top_per_row(dense, 2, by_magnitude=True)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 1)]


def test_save_load_round_trip_and_new_items(tmp_path):
    gen = ItemKnnGenerator.fit(data(PAIRS, 6, 5), ItemKnnConfig())
    gen.save(tmp_path)
    loaded = ItemKnnGenerator.load(tmp_path, gen.config, None, None)
    assert (loaded.weights != gen.weights).nnz == 0
    loaded.add_item(7, "a new item")  # grows without neighbours
    assert loaded.weights.shape == (8, 8)
    ids, _ = loaded.propose(state([0, 7]), 5, np.zeros(8, bool))
    assert 7 not in ids.tolist() and 1 in ids.tolist()


def test_a_disliked_item_subtracts_its_neighbours_instead_of_adding_them():
    gen = ItemKnnGenerator.fit(data(PAIRS, 6, 5), ItemKnnConfig(neighbours=2, shrinkage=0.0))
    w = gen.weights.toarray()
    # liked 0 (neighbour 1), disliked 2 (neighbours 3 and 4): they now score below zero
    user = state([0, 2], weights=[1.0, -2.0])
    np.testing.assert_allclose(gen.affinity(user, np.array([1, 3, 4])),
                               [w[0, 1], -w[2, 3], -w[2, 4]])
    banned = np.zeros(5, bool)
    banned[[0, 2]] = True
    ids, _ = gen.propose(user, 1, banned)
    assert ids.tolist() == [1]


@pytest.mark.parametrize("n, density, rows", [(50, 0.2, 5), (400, 0.5, 120)])
def test_weighted_row_sum_equals_the_dense_product_on_both_paths(n, density, rows):
    # 5 rows of a 50-item matrix take the numpy path, 120 rows of 200 entries each the scipy one
    import scipy.sparse as sp

    from shortlist.retrieval.generators.itemitem import _SCIPY_ENTRIES, weighted_row_sum

    rng = np.random.default_rng(3)
    w = sp.random(n, n, density=density, format="csr", dtype=np.float32, random_state=rng)
    picked = np.sort(rng.choice(n, rows, replace=False))
    strength = rng.normal(size=rows)
    assert (w.indptr[picked + 1] - w.indptr[picked]).sum() > _SCIPY_ENTRIES or rows == 5
    expected = strength @ w.toarray()[picked]
    np.testing.assert_allclose(weighted_row_sum(w, picked, strength), expected, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_array_equal(weighted_row_sum(w, picked[:0], strength[:0]), np.zeros(n))


def test_ease_keeps_every_weight_of_a_catalog_within_its_budget_and_prunes_beyond():
    rng = np.random.default_rng(0)
    pairs = sorted({(int(u), int(i)) for u, i in zip(rng.integers(0, 30, 200),
                                                       rng.integers(0, 12, 200),
                                                       strict=True)})
    d = data(pairs, 30, 12)
    from shortlist.retrieval.ease import Ease
    from shortlist.training.peers import interaction_matrix

    dense = Ease().fit(interaction_matrix(d.events, 30, 12), 5.0).weights
    full = EaseGenerator.fit(d, EaseConfig(lam=5.0))  # 144 weights, far under the budget
    np.testing.assert_allclose(full.weights.toarray(), dense, rtol=1e-5, atol=1e-6)
    capped = EaseGenerator.fit(d, EaseConfig(lam=5.0, max_weights=24))  # 2 per item
    assert capped.weights.getnnz(axis=1).max() == 2


def test_ease_fit_each_shares_one_inverse_per_lambda_and_matches_separate_fits(monkeypatch):
    rng = np.random.default_rng(1)
    pairs = sorted({(int(u), int(i)) for u, i in zip(rng.integers(0, 30, 200),
                                                       rng.integers(0, 12, 200),
                                                       strict=True)})
    d = data(pairs, 30, 12)
    configs = [EaseConfig(lam=lam, neighbours=nb) for lam in (5.0, 50.0) for nb in (2, 5, 0)]
    from shortlist.retrieval import ease

    inverses = []
    real_fit = ease.Ease.fit
    monkeypatch.setattr(ease.Ease, "fit",
                        lambda self, *a, **kw: inverses.append(a[1]) or real_fit(self, *a, **kw))
    shared = list(EaseGenerator.fit_each(d, configs))
    assert inverses == [5.0, 50.0]  # one per λ, not one per config
    for config, gen in zip(configs, shared, strict=True):
        alone = EaseGenerator.fit(d, config)
        assert gen.config == config
        np.testing.assert_array_equal(gen.weights.toarray(), alone.weights.toarray())
        assert gen.weights.getnnz(axis=1).max() == (config.neighbours or 11)  # B_ii = 0


def test_fit_each_or_skip_gives_one_result_per_config_when_the_data_cannot_support_it():
    from shortlist.retrieval.generators import fit_each_or_skip

    d = data(PAIRS, 6, 5)
    configs = [EaseConfig(max_items=4, neighbours=nb) for nb in (1, 2, 0)]
    assert list(fit_each_or_skip(EaseGenerator, d, configs)) == [None, None, None]
    ok = list(fit_each_or_skip(ItemKnnGenerator, d, [ItemKnnConfig(neighbours=1),
                                                     ItemKnnConfig(neighbours=5)]))
    assert [g.weights.getnnz(axis=1).max() for g in ok] == [1, 2]  # 2 co-occur at most


def as_set(rows, cols, vals):
    return {(int(r), int(c)): float(v) for r, c, v in zip(rows, cols, vals, strict=True)}


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**16), shape=st.tuples(st.integers(1, 6), st.integers(1, 12)),
       density=st.sampled_from([0.1, 0.5, 0.95]), n=st.integers(0, 14),
       by_magnitude=st.booleans(), signed=st.booleans())
def test_sparse_top_per_row_keeps_what_the_dense_version_keeps(seed, shape, density, n,
                                                                by_magnitude, signed):
    """The stored entries stand for a dense matrix with zeros elsewhere: the same entries are
    kept, negatives only where too few columns are >= 0. Values are distinct so that the
    dense version's arbitrary tie-breaking cannot differ."""
    rng = np.random.default_rng(seed)
    values = rng.permutation(np.arange(1, shape[0] * shape[1] + 1)).reshape(shape) / 10.0
    if signed:
        values *= rng.choice([-1.0, 1.0], size=shape)
    dense = np.where(rng.random(shape) < density, values, 0.0).astype(np.float32)
    m = sp.csr_matrix(dense)
    assert as_set(*top_per_row_sparse(m, n, by_magnitude)) == as_set(
        *top_per_row(dense, n, by_magnitude))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**16), st.integers(1, 300), st.sampled_from([7, 100_000, 2**40]))
def test_best_first_is_the_three_key_lexsort(seed, n, n_cols):
    """The packed 64-bit sort orders entries as lexsort (row, -key, column) does, negatives,
    ties and subnormals included; a column space too wide to pack takes the lexsort."""
    from shortlist.retrieval.generators.itemitem import _best_first

    rng = np.random.default_rng(seed)
    n_rows = 256
    rows = rng.integers(0, n_rows, n)
    cols = rng.integers(0, n_cols, n)
    pool = np.array([0.5, -0.5, 1e-40, -1e-40, 3.0, -2.0, 1e30], np.float32)
    key = np.where(rng.random(n) < 0.5, rng.choice(pool, n),
                   rng.normal(size=n)).astype(np.float32)
    got = _best_first(rows, cols, key, n_rows, n_cols)
    want = np.lexsort((cols, -key, rows))
    for a in (rows, cols, key):  # (row, column) pairs may repeat: compare what lands where
        np.testing.assert_array_equal(a[got], a[want])


def test_sparse_top_per_row_breaks_ties_to_the_lower_column():
    m = sp.csr_matrix(np.array([[0.5, 0.0, 0.5, 0.5]], np.float32))
    assert as_set(*top_per_row_sparse(m, 2)) == {(0, 0): 0.5, (0, 2): 0.5}


def dense_itemknn(d, config):
    """The similarity as first written (a dense items x items product): the reference."""
    from shortlist.retrieval.generators.itemitem import user_item_matrix

    x = user_item_matrix(d, config.confidence).toarray().astype(np.float32)
    norms = np.sqrt((x * x).sum(axis=0))
    norms[norms == 0] = 1.0
    sims = (x.T @ x) / (norms[:, None] * norms[None, :])
    if config.shrinkage > 0:
        b = (x != 0).astype(np.float32)
        co = b.T @ b
        sims *= co / (co + np.float32(config.shrinkage))
    np.fill_diagonal(sims, 0.0)
    return as_set(*top_per_row(sims, config.neighbours))


@pytest.mark.parametrize("shrinkage", [0.0, 10.0])
@pytest.mark.parametrize("transform", ["binary", "log1p"])
def test_itemknn_equals_the_dense_similarity_and_shares_blocks_across_counts(
        shrinkage, transform, monkeypatch):
    from shortlist.retrieval.generators import itemitem

    rng = np.random.default_rng(3)
    n_users, n_items, n = 60, 700, 900  # more items than one block of rows
    users, items = rng.integers(0, n_users, n), rng.zipf(1.3, n) % n_items
    pairs = sorted({(int(u), int(i)) for u, i in zip(users, items, strict=True)})
    weights = rng.integers(1, 9, len(pairs)).astype(np.float32)
    d = data(pairs, n_users, n_items, weights)
    configs = [ItemKnnConfig(neighbours=nb, shrinkage=shrinkage, confidence=transform)
               for nb in (3, 40, 5000)]
    blocks = []
    real = itemitem.pruned_each
    monkeypatch.setattr(itemitem, "pruned_each",
                        lambda block, *a, **kw: blocks.append(a) or real(block, *a, **kw))
    gens = list(ItemKnnGenerator.fit_each(d, configs))
    assert len(blocks) == 1  # one pass over the blocks for the three counts
    for config, gen in zip(configs, gens, strict=True):
        got = as_set(*sp.find(gen.weights))
        want = dense_itemknn(d, config)
        # per row the same values kept (which of equal values is kept at the cut is the
        # dense version's arbitrary choice), and the same value wherever both keep a pair
        for row in range(n_items):
            np.testing.assert_allclose(sorted(v for (r, _), v in got.items() if r == row),
                                       sorted(v for (r, _), v in want.items() if r == row),
                                       rtol=1e-5)
        common = got.keys() & want.keys()
        np.testing.assert_allclose([got[k] for k in common], [want[k] for k in common],
                                   rtol=1e-5)
        assert gen.weights.getnnz(axis=1).max() <= config.neighbours
