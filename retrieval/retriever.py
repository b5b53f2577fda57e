"""The retrieval domain: external ids in, candidates out. No gRPC here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shortlist.retrieval.bundle import RetrievalModels, banned_mask
from shortlist.retrieval.candidates import CandidateSet
from shortlist.retrieval.content import item_document
from shortlist.retrieval.errors import InvalidRequest, ItemNotFound
from shortlist.retrieval.search import ItemSearch


@dataclass
class RetrieveQuery:
    user_id: str
    recent_item_ids: list[str] = field(default_factory=list)
    exclude_item_ids: list[str] = field(default_factory=list)
    include_categories: list[str] = field(default_factory=list)
    exclude_categories: list[str] = field(default_factory=list)
    max_candidates: int = 0


@dataclass
class Retrieved:
    candidates: CandidateSet
    user_id: str
    version: str


class Retriever:
    def __init__(self, models: RetrievalModels, version: str, max_candidates_limit: int) -> None:
        self.models = models
        self.version = version
        self.max_candidates_limit = max_candidates_limit
        self._generator = models.generator()
        # Items added or changed by UpsertItem since this version: responses describe them,
        # because ranking's copy of the catalog is the published one.
        self.touched: set[int] = set()
        if models.als is not None:
            _ = models.als.gram  # warm: the first fold-in would otherwise pay for it
        c = models.catalog
        self.search_index = ItemSearch.build(
            c.titles, c.texts, c.categories, models.content)

    def retrieve(self, q: RetrieveQuery) -> Retrieved:
        if q.max_candidates < 0 or q.max_candidates > self.max_candidates_limit:
            raise InvalidRequest(
                f"max_candidates must be in [0, {self.max_candidates_limit}], "
                f"got {q.max_candidates}"
            )
        m = self.models
        n_items = len(m.catalog)
        user = m.users.index(q.user_id)
        items, stamps, _ = m.history.events(user)
        # Unknown recent or excluded ids are ignored: the caller's list may be ahead of us.
        recent = m.catalog.vocab.indices(q.recent_item_ids)
        recent = recent[recent >= 0]
        excluded = m.catalog.vocab.indices(q.exclude_item_ids)
        banned = banned_mask(n_items, items, recent, excluded)
        if q.exclude_categories:
            banned |= m.catalog.category_mask(q.exclude_categories)
        if q.include_categories:
            banned |= ~m.catalog.category_mask(q.include_categories)
        cands = self._generator.generate(
            user, items, stamps, recent, banned,
            stored_user_ok=not m.history.has_overlay(user),
            max_candidates=q.max_candidates,
        )
        return Retrieved(cands, q.user_id, self.version)

    def similar_items(self, item_id: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        m = self.models
        idx = m.catalog.vocab.index(item_id)
        if idx < 0:
            raise ItemNotFound(f"unknown item_id {item_id!r}")
        if m.content is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        banned = banned_mask(len(m.catalog), [idx])
        return self._generator.search(m.content_index, m.content.vectors,
                                       m.content.vectors[idx], k, banned)

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
        return self.search_index.search(query, k)

    # -- online writes: callers serialise them (RetrievalState holds the write lock) ---------

    def apply_interaction(self, user_id: str, item_id: str, weight: float,
                          timestamp: int) -> int:
        """Add one event to the user's online state; returns their distinct-item count."""
        m = self.models
        item = m.catalog.vocab.index(item_id)
        if item < 0:
            raise ItemNotFound(f"unknown item_id {item_id!r}")
        user = m.users.add(user_id)
        m.history.append(user, item, int(timestamp), float(weight))
        return len(np.unique(m.history.events(user)[0]))

    def apply_item(self, item_id: str, title: str, categories: list[str], text: str) -> bool:
        """Insert or update an item: catalog, content vector and index, search. New if True."""
        m = self.models
        created = item_id not in m.catalog.vocab
        idx = m.catalog.add(item_id, title, categories, text)
        self.touched.add(idx)
        m.trending.extend(len(m.catalog))
        if m.content is not None:
            vec = m.content.embed([item_document(title, categories, text)])[0]
            if idx >= len(m.content.vectors):
                m.content.vectors = np.vstack([m.content.vectors, vec[None, :]])
            else:
                m.content.vectors[idx] = vec
            if m.content_index is not None and np.linalg.norm(vec) > 0:
                m.content_index.add(vec, idx)
        self.search_index.add(idx, title, text, categories)
        return created
