"""The retrieval domain: external ids in, candidates out. No gRPC here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from retrieval.bundle import RetrievalModels, banned_mask
from retrieval.candidates import CandidateSet
from retrieval.errors import InvalidRequest, ItemNotFound


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
