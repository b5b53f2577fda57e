"""The retrieval domain: external ids in, candidates out. No gRPC here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shortlist.common.candidates import Candidates
from shortlist.retrieval.bundle import RetrievalModels, banned_mask
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
    max_candidates: int = 0  # 0: the version's tuned count
    k: int = 0  # the caller's list length: at least this many candidates when there are
    # What the caller knows of the user (age, country...); unknown names and values are
    # ignored, as the caller's data may be ahead of the model.
    user_attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class Retrieved:
    candidates: Candidates
    user_id: str
    version: str


class Retriever:
    def __init__(self, models: RetrievalModels, version: str, max_candidates_limit: int) -> None:
        self.models = models
        self.version = version
        self.max_candidates_limit = max_candidates_limit
        self.source = models.source()
        # Items added or changed by UpsertItem since this version: responses describe them,
        # because ranking's copy of the catalog is the published one.
        self.touched: set[int] = set()
        for gen in models.generators.values():
            gen.warm()
        c = models.catalog
        content = models.generators.get("content")
        # Search shares the content generator's model and reads its vectors at query time:
        # the catalog is embedded once, and an upsert's new vector (apply_item) is seen at once.
        self.search_index = ItemSearch.build(
            c.titles, c.texts, c.categories, content.model if content is not None else None)

    def retrieve(self, q: RetrieveQuery) -> Retrieved:
        if q.max_candidates < 0 or q.max_candidates > self.max_candidates_limit:
            raise InvalidRequest(
                f"max_candidates must be in [0, {self.max_candidates_limit}], "
                f"got {q.max_candidates}"
            )
        m = self.models
        n_items = len(m.catalog)
        # Unknown recent or excluded ids are ignored: the caller's list may be ahead of us.
        recent = m.catalog.vocab.indices(q.recent_item_ids)
        recent = recent[recent >= 0]
        user = m.user_state(m.users.index(q.user_id), recent, q.user_attributes)
        excluded = m.catalog.vocab.indices(q.exclude_item_ids)
        banned = banned_mask(n_items, user.items, excluded)
        if q.exclude_categories:
            banned |= m.catalog.category_mask(q.exclude_categories)
        if q.include_categories:
            banned |= ~m.catalog.category_mask(q.include_categories)
        limit = max(q.max_candidates or m.config.max_candidates, q.k)
        cands = self.source.generate(user, banned, max_candidates=limit)
        return Retrieved(cands, q.user_id, self.version)

    def similar_items(self, item_id: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        m = self.models
        idx = m.catalog.vocab.index(item_id)
        if idx < 0:
            raise ItemNotFound(f"unknown item_id {item_id!r}")
        banned = banned_mask(len(m.catalog), [idx])
        for gen in m.generators.values():
            found = gen.similar_items(idx, k, banned)
            if found is not None:
                return found
        return np.zeros(0, np.int64), np.zeros(0, np.float32)

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
        return self.search_index.search(query, k)

    # -- online writes: callers serialise them (RetrievalState holds the write lock) ---------

    def apply_interaction(self, user_id: str, item_id: str, weight: float,
                          timestamp: int, event: str = "") -> int:
        """Add one event to the user's online state; returns their distinct-item count.

        The history keeps the signed weight (the event's times its type's, by this version's
        table), so a dislike excludes the item and pushes the user's picture away from it.
        UnknownEventType when the table lacks ``event`` (checked before anything changes).
        """
        m = self.models
        signed = float(weight) * m.event_types.weight(event)
        item = m.catalog.vocab.index(item_id)
        if item < 0:
            raise ItemNotFound(f"unknown item_id {item_id!r}")
        user = m.users.add(user_id)
        m.history.append(user, item, int(timestamp), signed)
        return len(np.unique(m.history.events(user)[0]))

    def history_length(self, user_id: str) -> int:
        """Distinct items in the user's known history (0 for an unknown user)."""
        m = self.models
        user = m.users.index(user_id)
        return 0 if user < 0 else len(np.unique(m.history.events(user)[0]))

    def apply_item(self, item_id: str, title: str, categories: list[str], text: str) -> bool:
        """Insert or update an item: catalog, content vector and index, search. New if True."""
        m = self.models
        created = item_id not in m.catalog.vocab
        idx = m.catalog.add(item_id, title, categories, text)
        self.touched.add(idx)
        document = item_document(title, categories, text)
        for gen in m.generators.values():
            gen.add_item(idx, document)
        # After the generators: search only indexes the text, and blends the vector that the
        # content generator has just written.
        self.search_index.add(idx, title, text, categories)
        return created
