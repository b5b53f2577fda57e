"""The retriever's search reads the content generator's vectors, and an upsert reaches both."""

from __future__ import annotations

import numpy as np
import pytest

from shortlist.common import artifacts
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.retrieval.retriever import Retriever


@pytest.fixture
def retriever(trained) -> Retriever:
    """A fresh one per test: these tests upsert."""
    root = artifacts.resolve(trained)
    return Retriever(RetrievalModels.load(root), root.name, 500)


def test_search_holds_the_content_model_not_a_copy(retriever):
    content = retriever.models.generators["content"]
    assert retriever.search_index.content is content.model
    assert len(content.model.vectors) == len(retriever.models.catalog)


def test_upserted_item_is_found_with_its_vector_in_place(retriever):
    content = retriever.models.generators["content"]
    before = content.model.vectors
    assert retriever.apply_item("new-item", "Robot Wedding Planner", ["SciFi"],
                                "robot love wedding future")
    idx = retriever.models.catalog.vocab.index("new-item")
    assert content.model.vectors is not before  # grown by replacement, still seen by search
    assert np.linalg.norm(content.model.vectors[idx]) > 0
    items, scores, fuzzy = retriever.search("robot wedding planner", 5)
    assert items[0] == idx and not fuzzy
    items, _, fuzzy = retriever.search("robot weding planer", 5)
    assert items[0] == idx and fuzzy
    # Re-describing it moves its text and its vector together.
    old_vector = content.model.vectors[idx].copy()
    assert not retriever.apply_item("new-item", "Haunted Ghost Night", ["Horror"],
                                    "ghost blood haunted night")
    assert not np.allclose(content.model.vectors[idx], old_vector)
    assert idx not in retriever.search("robot wedding planner", 50)[0].tolist()
    assert retriever.search("haunted ghost night", 1)[0].tolist() == [idx]
