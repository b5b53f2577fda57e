"""CandidateSource on generators fitted by training on the synthetic dataset."""

from __future__ import annotations

import numpy as np
import pytest

from shortlist.common import artifacts
from shortlist.common.candidates import (
    SEGMENT_ESTABLISHED,
    SEGMENT_LIGHT,
    SEGMENT_NEW,
    SEGMENT_ONBOARDING,
    Candidates,
)
from shortlist.retrieval.bundle import RetrievalModels, banned_mask
from shortlist.retrieval.candidates import CandidateSource, segment_for
from shortlist.retrieval.generators import UserState
from shortlist.retrieval.hnsw import top_k_allowed


@pytest.fixture(scope="module")
def models(trained) -> RetrievalModels:
    return RetrievalModels.load(artifacts.resolve(trained))


@pytest.fixture(scope="module")
def source(models) -> CandidateSource:
    return models.source()


def _generate(models, source, user_id: str, **kw) -> tuple[Candidates, np.ndarray, UserState]:
    state = models.user_state(models.users.index(user_id))
    banned = banned_mask(len(models.catalog), state.items)
    return source.generate(state, banned, **kw), banned, state


def _column(c: Candidates, name: str) -> int:
    col = c.column(name)
    assert col is not None
    return col


def _check_consistent(c: Candidates, banned: np.ndarray, rrf_k: float) -> None:
    assert len(set(c.items.tolist())) == len(c.items)
    assert not banned[c.items].any()
    proposed = c.ranks > 0
    np.testing.assert_array_equal(proposed, ~np.isnan(c.scores))
    assert proposed.any(axis=1).all()
    for g in range(len(c.generators)):  # each generator's ranks are distinct
        ranks = c.ranks[proposed[:, g], g]
        assert len(set(ranks.tolist())) == len(ranks)
    rrf = np.where(proposed, 1.0 / (rrf_k + c.ranks), 0.0).sum(axis=1)
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


# HNSW with over-fetch (the small test catalog forced past EXACT_ENTRIES), an exact scan for
# a wide ban, an exact scan for a small catalog
@pytest.mark.parametrize("n_banned, exact_entries", [(3, 0), (100, 0), (3, None)])
def test_search_equals_exact_scan(models, n_banned, exact_entries, monkeypatch):
    if exact_entries is not None:
        monkeypatch.setattr("shortlist.retrieval.hnsw.EXACT_ENTRIES", exact_entries)
    rng = np.random.default_rng(n_banned)
    n = len(models.catalog)
    banned = np.zeros(n, dtype=bool)
    banned[rng.choice(n, n_banned, replace=False)] = True
    content, als = models.generators["content"], models.generators["als"]
    for index, vectors, query in (
        (content.index, content.model.vectors, content.model.vectors[5]),
        (als.index, als.model.item_factors, als.model.user_factors[3]),
    ):
        labels, scores = top_k_allowed(index, vectors, query, 10, banned)
        exact = np.where(banned, -np.inf, vectors @ query)
        assert len(labels) == min(10, n - n_banned)
        assert not banned[labels].any()
        np.testing.assert_array_equal(labels, np.argsort(-exact, kind="stable")[: len(labels)])
        np.testing.assert_allclose(scores, exact[labels], rtol=1e-5, atol=1e-6)


def test_search_with_everything_banned(models):
    content = models.generators["content"]
    banned = np.ones(len(models.catalog), dtype=bool)
    labels, _ = top_k_allowed(content.index, content.model.vectors, content.model.vectors[0],
                              10, banned)
    assert len(labels) == 0


def test_established_user(models, source):
    c, banned, state = _generate(models, source, "u4")
    assert c.segment == SEGMENT_ESTABLISHED
    assert c.history_length == len(np.unique(state.items))
    assert 0 < len(c) <= models.config.max_candidates
    assert c.generators == tuple(models.generators)
    _check_consistent(c, banned, models.config.rrf_k)
    als, content = models.generators["als"], models.generators["content"]
    for name in c.generators:
        assert (c.ranks[:, _column(c, name)] > 0).any()
    # Per-generator counts come from each generator's config.
    assert (c.ranks[:, _column(c, "als")] > 0).sum() == als.config.candidates
    # Stored user factors are used for a user without request-time items; affinity covers
    # every candidate, proposed or not.
    u = state.user
    np.testing.assert_allclose(c.affinity[:, _column(c, "als")],
                               als.model.item_factors[c.items] @ als.model.user_factors[u],
                               rtol=1e-5, atol=1e-6)
    taste = content.model.taste(state.items, state.now - state.stamps,
                                content.config.taste_half_life_days)
    np.testing.assert_allclose(c.affinity[:, _column(c, "content")],
                               content.model.vectors[c.items] @ taste, rtol=1e-5, atol=1e-6)
    assert np.isnan(c.affinity[:, _column(c, "trending")]).all()  # it has no picture of users
    # Recent items: newest first, distinct, from the history.
    newest = state.items[np.argsort(state.stamps, kind="stable")[::-1]]
    np.testing.assert_array_equal(c.recent_items, newest[: models.config.recent_items])


def test_user_genre_dominates_als_candidates(models, source):
    """u2 prefers Drama (genre index 2): ALS's best unseen items are mostly Drama."""
    c, _, _ = _generate(models, source, "u2")
    g = _column(c, "als")
    rows = np.flatnonzero(c.ranks[:, g] > 0)
    top = c.items[rows[np.argsort(c.ranks[rows, g])][:10]]
    assert np.mean(top % 6 == 2) >= 0.7


def test_max_candidates_override(models, source):
    full, _, _ = _generate(models, source, "u1")
    c, _, _ = _generate(models, source, "u1", max_candidates=7)
    assert len(c) == 7
    np.testing.assert_array_equal(c.items, full.items[:7])


def test_an_item_whose_latest_event_is_a_dislike_is_not_among_the_recent_items(models, source):
    # 1 liked, then 7 liked, then 7 disliked, then 2 disliked: what the ranker compares with
    # ("similar to what they just had") is 1 alone; both disliked items stay banned.
    items = np.array([1, 7, 7, 2], dtype=np.int64)
    stamps = models.now - np.array([400, 300, 200, 100], dtype=np.int64)
    state = UserState.of(-1, items, stamps, np.float32([1, 1, -2, -2]),
                         np.zeros(0, np.int64), models.now)
    banned = banned_mask(len(models.catalog), state.items)
    c = source.generate(state, banned)
    np.testing.assert_array_equal(c.recent_items, [1])
    assert c.history_length == 3 and not np.isin(c.items, [1, 2, 7]).any()


def test_light_user_with_recent_items(models, source):
    n = len(models.catalog)
    items = np.array([1, 7], dtype=np.int64)  # two Comedy items
    stamps = np.array([models.now - 100, models.now - 50], dtype=np.int64)
    recent = np.array([13, 13, -1], dtype=np.int64)  # duplicates and unknowns are dropped
    state = UserState.of(-1, items, stamps, np.ones(2, np.float32), recent, models.now)
    banned = banned_mask(n, state.items)
    c = source.generate(state, banned)
    assert c.segment == SEGMENT_LIGHT
    assert c.history_length == 3
    np.testing.assert_array_equal(c.recent_items, [13, 7, 1])
    _check_consistent(c, banned, models.config.rrf_k)
    als, content = models.generators["als"], models.generators["content"]
    assert (c.ranks[:, _column(c, "content")] > 0).sum() == int(
        content.config.candidates * content.config.light_factor)
    assert (c.ranks[:, _column(c, "als")] > 0).sum() == int(
        als.config.candidates * als.config.light_factor)
    # The user's vector is folded in from the items (no stored row for user -1).
    folded = als.model.fold_in(np.array([1, 7, 13]), np.ones(3, np.float32))
    np.testing.assert_allclose(c.affinity[:, _column(c, "als")],
                               als.model.item_factors[c.items] @ folded, rtol=1e-4, atol=1e-5)


def test_new_user_gets_trending_only(models, source):
    state = models.user_state(-1)
    c = source.generate(state, np.zeros(len(models.catalog), dtype=bool))
    assert c.segment == SEGMENT_NEW and c.history_length == 0 and len(c.recent_items) == 0
    assert (c.ranks[:, [_column(c, "als"), _column(c, "content")]] == 0).all()
    expected, _ = models.generators["trending"].model.top(models.config.max_candidates)
    np.testing.assert_array_equal(c.items, expected)
    assert np.isnan(c.affinity).all()  # nothing is known of the user


def test_source_with_trending_only(models):
    source = CandidateSource({"trending": models.generators["trending"]}, models.config)
    c, banned, _ = _generate(models, source, "u0")
    assert c.generators == ("trending",)
    assert len(c) == models.generators["trending"].config.candidates
    assert (c.ranks[:, 0] > 0).all()
    assert not banned[c.items].any()


def test_bundle_save_load_gives_same_candidates(tmp_path, models, source):
    models.save(tmp_path)
    loaded = RetrievalModels.load(tmp_path)
    assert loaded.config == models.config and loaded.now == models.now
    assert {n: g.config for n, g in loaded.generators.items()} == {
        n: g.config for n, g in models.generators.items()}
    a, _, _ = _generate(models, source, "u9")
    b, _, _ = _generate(loaded, loaded.source(), "u9")
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.ranks, b.ranks)
    np.testing.assert_allclose(a.affinity, b.affinity, rtol=1e-6)
