"""CandidateGenerator on models fitted by training on the synthetic dataset."""

from __future__ import annotations

import numpy as np
import pytest

from shortlist.common import artifacts
from shortlist.retrieval.bundle import RetrievalModels, banned_mask
from shortlist.retrieval.candidates import (
    GENERATORS,
    SEGMENT_ESTABLISHED,
    SEGMENT_LIGHT,
    SEGMENT_NEW,
    SEGMENT_ONBOARDING,
    CandidateGenerator,
    CandidateSet,
    segment_for,
)

ALS, CONTENT, TRENDING = (GENERATORS.index(g) for g in ("als", "content", "trending"))


@pytest.fixture(scope="module")
def models(trained) -> RetrievalModels:
    return RetrievalModels.load(artifacts.resolve(trained))


@pytest.fixture(scope="module")
def gen(models) -> CandidateGenerator:
    return models.generator()


def _user(models: RetrievalModels, user_id: str):
    u = models.users.index(user_id)
    items, stamps, _ = models.history.events(u)
    return u, items, stamps


def _check_consistent(c: CandidateSet, banned: np.ndarray, rrf_k: float) -> None:
    assert len(set(c.items.tolist())) == len(c.items)
    assert not banned[c.items].any()
    proposed = c.gen_ranks > 0
    np.testing.assert_array_equal(proposed, ~np.isnan(c.gen_scores))
    assert proposed.any(axis=1).all()
    # Each generator's ranks are distinct.
    for g in range(len(GENERATORS)):
        ranks = c.gen_ranks[proposed[:, g], g]
        assert len(set(ranks.tolist())) == len(ranks)
    rrf = np.where(proposed, 1.0 / (rrf_k + c.gen_ranks), 0.0).sum(axis=1)
    np.testing.assert_allclose(c.retrieval_score, rrf, rtol=1e-5)
    assert np.all(np.diff(c.retrieval_score) <= 1e-7)


@pytest.mark.parametrize(("n_history", "n_recent", "expected"), [
    (0, 0, SEGMENT_NEW), (0, 2, SEGMENT_ONBOARDING), (2, 0, SEGMENT_LIGHT),
    (2, 2, SEGMENT_LIGHT), (3, 2, SEGMENT_ESTABLISHED), (9, 0, SEGMENT_ESTABLISHED),
])
def test_segment_for(n_history, n_recent, expected):
    assert segment_for(n_history, n_recent, 5) == expected


def test_banned_mask_ignores_out_of_range():
    mask = banned_mask(5, np.array([0, 4]), np.array([-1, 7]), [2])
    np.testing.assert_array_equal(mask, [True, False, True, False, True])


@pytest.mark.parametrize("n_banned", [3, 100])  # HNSW with over-fetch / exact scan
def test_search_equals_exact_scan(models, gen, n_banned):
    rng = np.random.default_rng(n_banned)
    n = len(models.catalog)
    banned = np.zeros(n, dtype=bool)
    banned[rng.choice(n, n_banned, replace=False)] = True
    for index, vectors, query in (
        (models.content_index, models.content.vectors, models.content.vectors[5]),
        (models.als_index, models.als.item_factors, models.als.user_factors[3]),
    ):
        labels, scores = gen.search(index, vectors, query, 10, banned)
        exact = np.where(banned, -np.inf, vectors @ query)
        assert len(labels) == min(10, n - n_banned)
        assert not banned[labels].any()
        np.testing.assert_array_equal(labels, np.argsort(-exact, kind="stable")[: len(labels)])
        np.testing.assert_allclose(scores, exact[labels], rtol=1e-5, atol=1e-6)


def test_search_with_everything_banned(models, gen):
    banned = np.ones(len(models.catalog), dtype=bool)
    labels, _ = gen.search(models.content_index, models.content.vectors,
                           models.content.vectors[0], 10, banned)
    assert len(labels) == 0


def test_established_user(models, gen):
    u, items, stamps = _user(models, "u4")
    banned = banned_mask(len(models.catalog), items)
    c = gen.generate(u, items, stamps, np.zeros(0, np.int64), banned)
    assert c.segment == SEGMENT_ESTABLISHED
    assert c.history_length == len(np.unique(items))
    assert 0 < len(c) <= models.config.max_candidates
    _check_consistent(c, banned, models.config.rrf_k)
    for g in (ALS, CONTENT, TRENDING):
        assert (c.gen_ranks[:, g] > 0).any()
    # Per-generator counts come from the config.
    assert (c.gen_ranks[:, ALS] > 0).sum() == models.config.als_candidates
    # Stored user factors are used for a user without request-time items.
    np.testing.assert_allclose(c.als_score, models.als.item_factors[c.items]
                               @ models.als.user_factors[u], rtol=1e-5, atol=1e-6)
    taste = gen.taste_vector(items, stamps)
    np.testing.assert_allclose(c.taste_score, models.content.vectors[c.items] @ taste,
                               rtol=1e-5, atol=1e-6)
    # Recent items: newest first, distinct, from the history.
    newest = items[np.argsort(stamps, kind="stable")[::-1]]
    np.testing.assert_array_equal(c.recent_items, newest[: models.config.recent_items])


def test_user_genre_dominates_als_candidates(models, gen):
    """u2 prefers Drama (genre index 2): ALS's best unseen items are mostly Drama."""
    u, items, stamps = _user(models, "u2")
    banned = banned_mask(len(models.catalog), items)
    c = gen.generate(u, items, stamps, np.zeros(0, np.int64), banned)
    als_rows = np.flatnonzero(c.gen_ranks[:, ALS] > 0)
    top = c.items[als_rows[np.argsort(c.gen_ranks[als_rows, ALS])][:10]]
    assert np.mean(top % 6 == 2) >= 0.7


def test_max_candidates_override(models, gen):
    u, items, stamps = _user(models, "u1")
    banned = banned_mask(len(models.catalog), items)
    full = gen.generate(u, items, stamps, np.zeros(0, np.int64), banned)
    c = gen.generate(u, items, stamps, np.zeros(0, np.int64), banned, max_candidates=7)
    assert len(c) == 7
    np.testing.assert_array_equal(c.items, full.items[:7])


def test_light_user_with_recent_items(models, gen):
    n = len(models.catalog)
    items = np.array([1, 7], dtype=np.int64)  # two Comedy items
    stamps = np.array([models.now - 100, models.now - 50], dtype=np.int64)
    recent = np.array([13, 13, -1], dtype=np.int64)  # duplicates and unknowns are dropped
    banned = banned_mask(n, items, recent)
    c = gen.generate(-1, items, stamps, recent, banned)
    assert c.segment == SEGMENT_LIGHT
    assert c.history_length == 3
    np.testing.assert_array_equal(c.recent_items, [13, 7, 1])
    _check_consistent(c, banned, models.config.rrf_k)
    assert (c.gen_ranks[:, CONTENT] > 0).sum() == 2 * models.config.content_candidates
    assert (c.gen_ranks[:, ALS] > 0).sum() == models.config.als_candidates // 2
    # The user's vector is folded in from the items (no stored row for user -1).
    folded = models.als.fold_in(np.array([1, 7, 13]), np.ones(3, np.float32))
    np.testing.assert_allclose(c.als_score, models.als.item_factors[c.items] @ folded,
                               rtol=1e-4, atol=1e-5)


def test_new_user_gets_trending_only(models, gen):
    n = len(models.catalog)
    banned = np.zeros(n, dtype=bool)
    empty = np.zeros(0, np.int64)
    c = gen.generate(-1, empty, empty, empty, banned)
    assert c.segment == SEGMENT_NEW and c.history_length == 0 and len(c.recent_items) == 0
    assert (c.gen_ranks[:, [ALS, CONTENT]] == 0).all()
    expected, _ = models.trending.top(models.config.max_candidates)
    np.testing.assert_array_equal(c.items, expected)
    np.testing.assert_array_equal(c.als_score, 0.0)


def test_generator_without_als_or_content(models):
    gen = CandidateGenerator(len(models.catalog), models.trending, None, None, None, None,
                             models.now, models.config)
    u, items, stamps = _user(models, "u0")
    banned = banned_mask(len(models.catalog), items)
    c = gen.generate(u, items, stamps, np.zeros(0, np.int64), banned)
    assert len(c) == models.config.trending_candidates
    assert (c.gen_ranks[:, TRENDING] > 0).all()
    assert not banned[c.items].any()


def test_bundle_save_load_gives_same_candidates(tmp_path, models, gen):
    models.save(tmp_path)
    loaded = RetrievalModels.load(tmp_path)
    assert loaded.config == models.config and loaded.now == models.now
    u, items, stamps = _user(models, "u9")
    banned = banned_mask(len(models.catalog), items)
    a = gen.generate(u, items, stamps, np.zeros(0, np.int64), banned)
    b = loaded.generator().generate(u, items, stamps, np.zeros(0, np.int64), banned)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.gen_ranks, b.gen_ranks)
