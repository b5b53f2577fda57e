"""Item search shares the content model's vectors instead of keeping a copy of its own."""

from __future__ import annotations

import numpy as np
import pytest

from shortlist.retrieval.content import ContentModel, item_document
from shortlist.retrieval.generators.content import ContentConfig, ContentGenerator
from shortlist.retrieval.search import ContentSpace, ItemSearch
from shortlist.retrieval.search.index import BLEND

TITLES = ["Space Robots (1990)", "Robot Love (1991)", "Haunted Night (1992)",
          "Ghost Blood (1993)", "Family Tears (1994)", "Wedding Kiss (1995)",
          "Alien Future (1996)", "Laugh Party (1997)"]
CATS = [["SciFi"], ["SciFi"], ["Horror"], ["Horror"], ["Drama"], ["Romance"], ["SciFi"],
        ["Comedy"]]
TEXTS = ["space robot future", "robot love heart", "ghost haunted night", "ghost blood night",
         "family tears life", "love kiss wedding", "alien space future", "funny laugh party"]


def _docs(n: int = len(TITLES)) -> list[str]:
    return [item_document(TITLES[i], CATS[i], TEXTS[i]) for i in range(n)]


class CountingModel:
    """A ContentSpace that counts what it embeds, over a real fitted model."""

    def __init__(self, model: ContentModel) -> None:
        self.model = model
        self.embedded: list[str] = []

    @property
    def vectors(self) -> np.ndarray:
        return self.model.vectors

    def embed(self, documents: list[str]) -> np.ndarray:
        self.embedded += documents
        return self.model.embed(documents)


@pytest.fixture
def model() -> ContentModel:
    return ContentModel(dim=6, seed=1).fit(_docs())


def test_content_model_is_a_content_space(model):
    space: ContentSpace = model  # the protocol is structural: no adapter in between
    assert space.vectors is model.vectors


def test_search_reads_the_models_vectors_and_copies_none(model):
    s = ItemSearch.build(TITLES, TEXTS, CATS, model)
    assert not any(isinstance(v, np.ndarray) and v.ndim == 2 for v in vars(s).values())
    before = s.search("robot", 8)
    # The owner replaces the array (as an upsert that grows it does): the next query sees it.
    model.vectors = np.zeros_like(model.vectors)
    idx, scores, _ = s.search("robot", 8)
    assert set(idx.tolist()) == {0, 1}  # no vector, no related items, only the lexical hits
    assert len(before[0]) > len(idx)  # with vectors, related items filled in


def test_add_indexes_text_only_and_embeds_nothing(model):
    space = CountingModel(model)
    s = ItemSearch.build(TITLES, TEXTS, CATS, space)
    s.add(len(TITLES), "Quantum Badgers (2031)", "burrowing physicists", ["SciFi"])
    s.add(0, "Space Robots (1990)", "space robot future", ["SciFi"])
    assert space.embedded == []
    s.search("quantum badgers", 5)
    assert space.embedded == ["quantum badgers"]  # the query, and nothing else


def test_items_beyond_the_vectors_are_searchable_without_a_blend(model):
    model.vectors = model.vectors[:4].copy()  # the model covers items 0..3 only
    s = ItemSearch.build(TITLES, TEXTS, CATS, model)
    s.add(11, "Robot Wedding (2000)", "robot love wedding", ["Romance"])  # skips 8..10
    idx, scores, _ = s.search("robot", 20)
    assert {0, 1, 11} <= set(idx.tolist())
    assert all(i < 4 or i in (0, 1, 11) for i in idx.tolist())  # related: covered items only
    lexical = ItemSearch.build(TITLES, TEXTS, CATS, None)
    lexical.add(11, "Robot Wedding (2000)", "robot love wedding", ["Romance"])
    lex_idx, lex_scores, _ = lexical.search("robot", 20)
    # An uncovered item scores exactly as without a content model.
    assert scores[idx.tolist().index(11)] == lex_scores[lex_idx.tolist().index(11)]
    for query in ("wedding", "robt", "nothing at all", "ghost"):
        s.search(query, 20)  # no IndexError for any pool


def test_vectors_ahead_of_the_index_are_ignored(model):
    """Upserts write the vector first; until search indexes the item it is not a result."""
    s = ItemSearch.build(TITLES[:6], TEXTS[:6], CATS[:6], model)  # vectors cover 8 items
    idx, _, _ = s.search("alien space future", 10)
    assert np.all(idx < 6)


def test_upsert_through_the_content_generator_reaches_the_blend():
    """The retriever's order: the generator embeds the item, then search indexes its text."""
    n = 6
    model = ContentModel(dim=6, seed=1).fit(_docs(n))
    gen = ContentGenerator(model, None, ContentConfig())
    s = ItemSearch.build(TITLES[:n], TEXTS[:n], CATS[:n], gen.model)
    lexical = ItemSearch.build(TITLES[:n], TEXTS[:n], CATS[:n], None)
    new_title, new_cats, new_text = "Robot Ghost (2001)", ["Horror"], "ghost robot night"
    gen.add_item(n, item_document(new_title, new_cats, new_text))
    s.add(n, new_title, new_text, new_cats)
    lexical.add(n, new_title, new_text, new_cats)
    assert len(gen.model.vectors) == n + 1  # grown by replacement, seen through the model
    query = "robot ghost"
    idx, scores, _ = s.search(query, 3)
    lex_idx, lex_scores, _ = lexical.search(query, 3)
    assert idx[0] == lex_idx[0] == n
    qv = model.embed([query])[0]
    expected = lex_scores[0] + BLEND * max(float(model.vectors[n] @ qv), 0.0)
    assert scores[0] == pytest.approx(expected, rel=1e-6)
    assert float(model.vectors[n] @ qv) > 0
