"""Retriever: external ids in, filtered candidates out (trained synthetic artifact)."""

from __future__ import annotations

import numpy as np
import pytest

from shortlist.common import artifacts
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.retrieval.errors import InvalidRequest, ItemNotFound
from shortlist.retrieval.retriever import RetrieveQuery, Retriever
from tests.conftest import GENRES

LIMIT = 500


@pytest.fixture(scope="module")
def retriever(trained) -> Retriever:
    root = artifacts.resolve(trained)
    return Retriever(RetrievalModels.load(root), root.name, LIMIT)


def _genre(retriever: Retriever, idx: np.ndarray) -> list[str]:
    return [retriever.models.catalog.categories[int(i)][0] for i in idx]


def _history_ids(retriever: Retriever, user_id: str) -> set[str]:
    m = retriever.models
    return set(m.catalog.vocab.ids(m.history.events(m.users.index(user_id))[0]))


def _check(retriever: Retriever, q: RetrieveQuery):
    res = retriever.retrieve(q)
    c = res.candidates
    ids = retriever.models.catalog.vocab.ids(c.items)
    assert len(set(ids)) == len(ids)
    assert not set(ids) & set(q.exclude_item_ids)
    assert not set(ids) & set(q.recent_item_ids)
    assert not set(ids) & _history_ids(retriever, q.user_id)
    np.testing.assert_array_equal(c.ranks > 0, ~np.isnan(c.scores))
    assert (c.ranks > 0).any(axis=1).all()
    limit = q.max_candidates or retriever.models.config.max_candidates
    assert len(c) <= limit
    assert res.user_id == q.user_id and res.version == retriever.version
    return c, ids


@pytest.mark.parametrize("user_id", ["u0", "u1", "u5", "u17", "u149"])
def test_established_user(retriever, user_id):
    c, _ = _check(retriever, RetrieveQuery(user_id=user_id))
    assert c.segment == "established"
    for name, gen in retriever.models.generators.items():
        assert (c.ranks[:, c.column(name)] > 0).sum() == gen.config.candidates


def test_favourite_genre_leads(retriever):
    """u3 prefers Horror: most of the ten best-fused candidates are Horror."""
    c, _ = _check(retriever, RetrieveQuery(user_id="u3"))
    assert _genre(retriever, c.items[:10]).count("Horror") >= 7


def test_excluded_ids_are_removed(retriever):
    _, ids = _check(retriever, RetrieveQuery(user_id="u2"))
    exclude = ids[:5] + ["not-an-item"]
    _, new_ids = _check(retriever, RetrieveQuery(user_id="u2", exclude_item_ids=exclude))
    assert not set(new_ids) & set(exclude)
    assert set(ids[5:15]) <= set(new_ids)


@pytest.mark.parametrize("user_id", ["u0", "nobody"])
def test_include_categories(retriever, user_id):
    q = RetrieveQuery(user_id=user_id, include_categories=["Comedy", "Romance"])
    c, _ = _check(retriever, q)
    assert len(c) > 0
    assert set(_genre(retriever, c.items)) <= {"Comedy", "Romance"}


@pytest.mark.parametrize("user_id", ["u0", "nobody"])
def test_exclude_categories(retriever, user_id):
    q = RetrieveQuery(user_id=user_id, exclude_categories=["Action", "Drama", "SciFi"])
    c, _ = _check(retriever, q)
    assert len(c) > 0
    assert set(_genre(retriever, c.items)) <= {"Comedy", "Horror", "Romance"}


def test_unknown_include_category_leaves_nothing(retriever):
    c, _ = _check(retriever, RetrieveQuery(user_id="u0", include_categories=["Western"]))
    assert len(c) == 0


def test_unknown_user_is_new_and_gets_trending(retriever):
    c, ids = _check(retriever, RetrieveQuery(user_id="nobody"))
    assert c.segment == "new" and c.history_length == 0
    assert (c.ranks[:, [c.column("als"), c.column("content")]] == 0).all()
    assert (c.ranks[:, c.column("trending")] > 0).all()
    expected, _ = retriever.models.generators["trending"].model.top(len(c))
    np.testing.assert_array_equal(c.items, expected)


def test_unknown_user_with_recent_items_is_onboarding(retriever):
    recent = ["i5", "i11", "i17", "unknown-item"]  # SciFi items, plus one we do not know
    c, _ = _check(retriever, RetrieveQuery(user_id="nobody", recent_item_ids=recent))
    assert c.segment == "onboarding"
    assert c.history_length == 3
    g = c.column("content")
    content = c.items[c.ranks[:, g] > 0]
    assert len(content) > 0
    best = content[np.argsort(c.ranks[c.ranks[:, g] > 0, g])][:10]
    assert set(_genre(retriever, best)) == {"SciFi"}
    assert set(retriever.models.catalog.vocab.ids(c.recent_items)) == {"i5", "i11", "i17"}


def test_known_user_with_recent_items(retriever):
    c, _ = _check(retriever, RetrieveQuery(user_id="u0", recent_item_ids=["i1", "i2"]))
    assert c.segment == "established"


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.99])
def test_max_candidates(retriever, fraction):
    """A cap below what the generators propose keeps the best-merged prefix of that many.

    The caps are fractions of what this artifact proposes, not numbers, because tuning picks
    the candidate counts.
    """
    for user_id in ("u0", "nobody"):
        _, every = _check(retriever, RetrieveQuery(user_id=user_id, max_candidates=LIMIT))
        cap = max(1, int(fraction * len(every)))
        c, ids = _check(retriever, RetrieveQuery(user_id=user_id, max_candidates=cap))
        assert len(c) == cap
        assert ids == every[:cap]


@pytest.mark.parametrize("max_candidates", [-1, LIMIT + 1])
def test_max_candidates_out_of_range(retriever, max_candidates):
    with pytest.raises(InvalidRequest):
        retriever.retrieve(RetrieveQuery(user_id="u0", max_candidates=max_candidates))


def test_overlay_events_are_banned_and_folded_in(trained):
    root = artifacts.resolve(trained)
    r = Retriever(RetrievalModels.load(root), root.name, LIMIT)
    before, ids = _check(r, RetrieveQuery(user_id="u0"))
    u = r.models.users.index("u0")
    for item in before.items[:3]:
        r.models.history.append(u, int(item), r.models.now + 10, 1.0)
    after, new_ids = _check(r, RetrieveQuery(user_id="u0"))
    assert not set(new_ids) & set(ids[:3])
    items, _, _ = r.models.history.events(u)
    als = r.models.generators["als"].model
    folded = als.fold_in(np.unique(items), np.ones(len(np.unique(items))))
    np.testing.assert_allclose(after.affinity[:, after.column("als")],
                               als.item_factors[after.items] @ folded, rtol=1e-4, atol=1e-5)


def test_similar_items_unknown_item(retriever):
    with pytest.raises(ItemNotFound):
        retriever.similar_items("no-such-item", 5)


@pytest.mark.parametrize("item", [0, 3, 10, 119])
def test_similar_items_same_genre_and_not_itself(retriever, item):
    item_id = f"i{item}"
    idx, scores = retriever.similar_items(item_id, 10)
    assert len(idx) == 10 and item not in idx.tolist()
    assert len(set(idx.tolist())) == 10
    assert np.all(np.diff(scores) <= 1e-6)
    assert set(_genre(retriever, idx)) == {GENRES[item % len(GENRES)]}
    vectors = retriever.models.generators["content"].model.vectors
    np.testing.assert_allclose(scores, vectors[idx] @ vectors[item], rtol=1e-5, atol=1e-6)
