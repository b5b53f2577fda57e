"""Retriever.explain_item over the trained synthetic artifact: every verdict, in precedence."""

from __future__ import annotations

import pytest

from shortlist.common import artifacts
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.retrieval.retriever import RetrieveQuery, Retriever
from tests.conftest import GENRES


@pytest.fixture(scope="module")
def retriever(trained) -> Retriever:
    version_dir = artifacts.resolve(trained)
    return Retriever(RetrievalModels.load(version_dir), version_dir.name, 5000)


def verdict(retriever: Retriever, item: str, **query):
    q = RetrieveQuery(user_id="u5", max_candidates=40, **query)
    return retriever.explain_item(q, item, retriever.retrieve(q).candidates)


def test_each_verdict(retriever):
    m = retriever.models
    user = m.users.index("u5")
    seen = m.catalog.vocab.id(int(m.history.events(user)[0][0]))
    assert verdict(retriever, "nope").status == "UNKNOWN_ITEM"
    got = verdict(retriever, seen, exclude_item_ids=[seen])
    assert got.status == "SEEN" and "history" in got.reason  # seen wins over the filter

    q = RetrieveQuery(user_id="u5", max_candidates=40)
    cands = retriever.retrieve(q).candidates
    ids = [m.catalog.vocab.id(i) for i in cands.items.tolist()]
    third = verdict(retriever, ids[2])
    assert (third.status, third.rank, third.candidates) == ("CANDIDATE", 3, 40)
    assert third.sources and all(rank > 0 for _, rank, _ in third.sources)

    filtered = verdict(retriever, ids[0], exclude_item_ids=[ids[0]])
    assert filtered.status == "FILTERED" and "exclude_item_ids" in filtered.reason
    genre = m.catalog.categories[cands.items[0]][0]
    by_category = verdict(retriever, ids[0], exclude_categories=[genre])
    assert by_category.status == "FILTERED" and genre in by_category.reason
    other = next(g for g in GENRES if g != genre)
    outside = verdict(retriever, ids[0], include_categories=[other])
    assert outside.status == "FILTERED" and "outside" in outside.reason

    # an item of the catalog the user has not seen and 40 candidates do not reach
    history = set(m.history.events(user)[0].tolist())
    missing = next(i for i in range(len(m.catalog))
                   if i not in history and i not in set(cands.items.tolist()))
    deep = verdict(retriever, m.catalog.vocab.id(missing))
    assert deep.status == "NOT_RETRIEVED" and deep.candidates == 40
    if deep.rank:  # found by the deeper search: beyond the 40, with who proposed it
        assert deep.rank > 40 and deep.sources
    else:
        assert deep.sources == []
