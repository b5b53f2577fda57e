"""HNSW indices: recall against exact scans, MIPS by norm augmentation, persistence, top-k."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shortlist.retrieval.hnsw import HnswIndex, MipsIndex, augment_items, exact_top_k


def _recall(found: list[np.ndarray], truth: list[np.ndarray]) -> float:
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth, strict=True))
    return hits / sum(len(t) for t in truth)


@pytest.fixture(scope="module")
def factors() -> np.ndarray:
    """2000 x 32 factors whose norms vary over roughly two orders of magnitude."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 32)).astype(np.float32)
    return (x * rng.lognormal(0.0, 1.0, size=(2000, 1))).astype(np.float32)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(50, 32)).astype(np.float32)


def test_augment_items_preserves_inner_products_and_equalises_norms(factors):
    aug, max_norm = augment_items(factors)
    assert aug.shape == (2000, 33)
    np.testing.assert_allclose(max_norm, np.linalg.norm(factors, axis=1).max(), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(aug, axis=1), max_norm, rtol=1e-4)
    q = np.append(np.ones(32, np.float32), 0.0)
    np.testing.assert_allclose(aug @ q, factors @ np.ones(32), rtol=1e-4, atol=1e-3)


def test_mips_recall_scores_and_order(factors, queries):
    """The large-norm items (the usual answers) must stay reachable in the augmented graph."""
    index = MipsIndex.build(factors, seed=3)
    assert len(index.index) == 2000
    found, truth = [], []
    for q in queries:
        labels, scores = index.query(q, 10)
        assert len(labels) == 10 and len(set(labels.tolist())) == 10
        np.testing.assert_allclose(scores, factors[labels] @ q, rtol=1e-5, atol=1e-4)
        assert np.all(np.diff(scores) <= 0)
        found.append(labels)
        truth.append(np.argsort(-(factors @ q))[:10])
    assert _recall(found, truth) >= 0.95


def test_mips_differs_from_cosine_ranking(factors, queries):
    """Sanity check on the data: with varied norms, top inner product != top cosine."""
    unit = factors / np.linalg.norm(factors, axis=1, keepdims=True)
    ip = [np.argsort(-(factors @ q))[:10] for q in queries]
    cos = [np.argsort(-(unit @ q))[:10] for q in queries]
    assert _recall(cos, ip) < 0.8


def test_mips_save_load(tmp_path, factors, queries):
    index = MipsIndex.build(factors[:300], seed=5)
    index.save(tmp_path / "mips.bin")
    loaded = MipsIndex.load(tmp_path / "mips.bin", factors[:300])
    for q in queries[:10]:
        a, sa = index.query(q, 10)
        b, sb = loaded.query(q, 10)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(sa, sb)


def test_hnsw_cosine_recall_and_distances():
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(2000, 32)).astype(np.float32)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    index = HnswIndex.build(vectors, "cosine", seed=4)
    assert len(index) == 2000
    found, truth = [], []
    for q in rng.normal(size=(50, 32)).astype(np.float32):
        labels, dist = index.query(q, 10)
        cos = unit[labels] @ (q / np.linalg.norm(q))
        np.testing.assert_allclose(dist, 1.0 - cos, atol=1e-4)
        assert np.all(np.diff(dist) >= -1e-6)
        found.append(labels)
        truth.append(np.argsort(-(unit @ q))[:10])
    assert _recall(found, truth) >= 0.95


def test_hnsw_save_load_identical(tmp_path):
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    index = HnswIndex.build(vectors, "cosine", ef=50, seed=1)
    path = tmp_path / "index.bin"
    index.save(path)
    loaded = HnswIndex.load(path, "cosine", 16, ef=50)
    assert len(loaded) == 500 and loaded.dim == 16 and loaded.space == "cosine"
    for q in rng.normal(size=(20, 16)).astype(np.float32):
        a, da = index.query(q, 15)
        b, db = loaded.query(q, 15)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(da, db)


def test_hnsw_add_new_vector_is_findable_after_resize(tmp_path):
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(100, 8)).astype(np.float32)
    index = HnswIndex.build(vectors, "cosine", seed=2)  # max_elements == 100: add must resize
    new = rng.normal(size=8).astype(np.float32)
    index.add(new, 100)
    assert len(index) == 101
    labels, dist = index.query(new, 3)
    assert labels[0] == 100 and dist[0] == pytest.approx(0.0, abs=1e-5)

    # Also after a save/load round-trip (the loaded index is full again).
    index.save(tmp_path / "i.bin")
    loaded = HnswIndex.load(tmp_path / "i.bin", "cosine", 8)
    newer = rng.normal(size=8).astype(np.float32)
    loaded.add(newer, 101)
    assert len(loaded) == 102
    assert loaded.query(newer, 1)[0][0] == 101
    assert loaded.query(new, 1)[0][0] == 100


def test_hnsw_add_existing_label_replaces_vector():
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    index = HnswIndex.build(vectors, "l2", seed=2)
    target = vectors[7] * 3 + 10.0  # far from everything
    index.add(target, 7)
    assert len(index) == 50
    labels, dist = index.query(target, 1)
    assert labels[0] == 7 and dist[0] == pytest.approx(0.0, abs=1e-4)


def test_hnsw_query_clamps_k():
    vectors = np.eye(4, dtype=np.float32)
    index = HnswIndex.build(vectors, "l2")
    labels, _ = index.query(vectors[0], 10)
    assert sorted(labels.tolist()) == [0, 1, 2, 3] and labels[0] == 0
    assert len(index.query(vectors[0], 0)[0]) == 0
    empty = HnswIndex.build(np.zeros((0, 4), np.float32), "l2")
    assert len(empty) == 0 and len(empty.query(vectors[0], 5)[0]) == 0


_scores = hnp.arrays(
    np.float64, st.integers(0, 60),
    elements=st.one_of(st.sampled_from([0.0, 1.0, -1.0, 2.5, -np.inf]),
                       st.floats(-1e6, 1e6, allow_nan=False)),
)


@settings(max_examples=300, deadline=None)
@given(scores=_scores, k=st.integers(-2, 70))
def test_exact_top_k_matches_full_sort(scores, k):
    got = exact_top_k(scores, k)
    expected = np.argsort(-scores, kind="stable")[: max(k, 0)]
    np.testing.assert_array_equal(got, expected)  # true top-k, ties by lower index
    assert len(got) == min(max(k, 0), len(scores))
    assert np.all(scores[got][:-1] >= scores[got][1:])


@settings(max_examples=200, deadline=None)
@given(scores=hnp.arrays(np.float32, st.integers(0, 60),
                         elements=st.sampled_from([0.0, 1.0, -1.0, np.nan, -np.inf, np.inf])),
       k=st.integers(0, 70))
def test_exact_top_k_leaves_nan_last(scores, k):
    """A NaN score (never expected, but a factor can overflow) ranks below every number, as
    a sort puts it: the fast partition's tail would otherwise take it as the largest."""
    got = exact_top_k(scores, k)
    np.testing.assert_array_equal(got, np.argsort(-scores, kind="stable")[:k])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 40), k=st.integers(0, 45),
       dtype=st.sampled_from([np.float32, np.float64]), data=st.data())
def test_top_k_allowed_many_equals_one_query_at_a_time(seed, n, k, dtype, data):
    """Each query's (ids, scores) as ``top_k_allowed`` gives them: None proposes nothing, a
    user with every item banned gets nothing, k beyond what is allowed is clamped."""
    from shortlist.retrieval import hnsw

    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    m = data.draw(st.integers(0, 12))
    queries = [None if rng.random() < 0.2 else rng.normal(size=8).astype(dtype)
               for _ in range(m)]
    banned = [rng.random(n + 3) < data.draw(st.sampled_from([0.0, 0.3, 1.0]))
              for _ in range(m)]
    got = hnsw.top_k_allowed_many(None, vectors, queries, k, banned)
    assert len(got) == m
    for q, b, (ids, scores) in zip(queries, banned, got, strict=True):
        if q is None:
            assert len(ids) == 0 and len(scores) == 0
            continue
        want_ids, want_scores = hnsw.top_k_allowed(None, vectors, q, k, b)
        assert ids.dtype == want_ids.dtype and scores.dtype == np.float32
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
        # equal scores may be ordered apart only by rounding: compare the sets of ids there
        assert len(ids) == len(want_ids)
        if len(ids) and np.all(np.abs(np.diff(want_scores)) > 1e-4):
            assert np.array_equal(ids, want_ids)
        assert not b[:n][ids].any()


def test_top_k_allowed_many_queries_an_index_one_at_a_time_above_the_scan_size(
        monkeypatch, factors, queries):
    from shortlist.retrieval import hnsw

    index = MipsIndex.build(factors, ef=200)
    monkeypatch.setattr(hnsw, "EXACT_ENTRIES", 0)  # every catalog counts as large
    calls = []
    real = index.query
    monkeypatch.setattr(index, "query", lambda q, k: calls.append(k) or real(q, k))
    banned = [np.zeros(len(factors), bool) for _ in queries[:5]]
    got = hnsw.top_k_allowed_many(index, factors, list(queries[:5]), 10, banned)
    assert len(calls) == 5
    for q, (ids, _) in zip(queries[:5], got, strict=True):
        assert np.array_equal(ids, hnsw.top_k_allowed(index, factors, q, 10, banned[0])[0])
