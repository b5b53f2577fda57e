"""The retrieval domain: external ids in, candidates out. No gRPC here."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from shortlist.common.candidates import Candidates
from shortlist.common.drift import DEFAULT_WINDOW, SEGMENT, SOURCES, Monitor, source_counts
from shortlist.retrieval.bundle import RetrievalModels, banned_mask
from shortlist.retrieval.candidates import CandidateSource
from shortlist.retrieval.content import item_document
from shortlist.retrieval.errors import InvalidRequest, ItemNotFound
from shortlist.retrieval.generators import UserState
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
class ItemVerdict:
    """Where one item stands for one user (see ``Retriever.explain_item``)."""

    status: str  # CANDIDATE, NOT_RETRIEVED, SEEN, FILTERED or UNKNOWN_ITEM
    reason: str
    rank: int = 0  # merged rank (in the deeper search when NOT_RETRIEVED); 0: none
    sources: list[tuple[str, int, float]] = field(default_factory=list)  # generator, rank, score
    candidates: int = 0


def _sources(cands: Candidates, row: int) -> list[tuple[str, int, float]]:
    return [(name, int(cands.ranks[row, g]), float(cands.scores[row, g]))
            for g, name in enumerate(cands.generators) if cands.ranks[row, g] > 0]


@dataclass
class Retrieved:
    candidates: Candidates
    user_id: str
    version: str


class Retriever:
    def __init__(self, models: RetrievalModels, version: str, max_candidates_limit: int,
                 drift_window: int = DEFAULT_WINDOW) -> None:
        self.models = models
        self.version = version
        self.max_candidates_limit = max_candidates_limit
        self.source = models.source()
        # The source and segment mix of the latest ``drift_window`` requests against the
        # version's reference (None for a version without one): per version, so a swap
        # starts a fresh window against the new reference.
        self.drift = Monitor.of(models.drift, drift_window)
        self._drift_sources = (tuple(models.drift.signals[SOURCES].labels)
                               if self.drift is not None and self.drift.has(SOURCES) else ())
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
        limit = max(q.max_candidates or m.config.max_candidates, q.k)
        cands = self.source.generate(*self._user(q), max_candidates=limit)
        if self.drift is not None:
            self.observe_drift(cands)
        return Retrieved(cands, q.user_id, self.version)

    def _user(self, q: RetrieveQuery) -> tuple[UserState, np.ndarray]:
        """The query's user state, and the mask of items it must not be proposed (history,
        request filters)."""
        m = self.models
        # Unknown recent or excluded ids are ignored: the caller's list may be ahead of us.
        recent = m.catalog.vocab.indices(q.recent_item_ids)
        recent = recent[recent >= 0]
        user = m.user_state(m.users.index(q.user_id), recent, q.user_attributes)
        excluded = m.catalog.vocab.indices(q.exclude_item_ids)
        banned = banned_mask(len(m.catalog), user.items, excluded)
        if q.exclude_categories:
            banned |= m.catalog.category_mask(q.exclude_categories)
        if q.include_categories:
            banned |= ~m.catalog.category_mask(q.include_categories)
        return user, banned

    def explain_item(self, q: RetrieveQuery, item_id: str, cands: Candidates) -> ItemVerdict:
        """Where ``item_id`` stands for the query's user, given the candidates retrieved for
        it: in order of precedence unknown, seen, filtered, a candidate, or not retrieved (then
        a search ten times deeper says how far it was)."""
        m = self.models
        item = m.catalog.vocab.index(item_id)
        if item < 0:
            return ItemVerdict("UNKNOWN_ITEM", f"{item_id} is not in version {self.version}'s "
                                               "catalog")
        user, _ = self._user(q)
        if item in set(user.items.tolist()):
            disliked = any(w < 0 for i, w in zip(user.items.tolist(), user.weights.tolist(),
                                                 strict=True) if i == item)
            return ItemVerdict("SEEN", "the user disliked it" if disliked else
                               "already in the user's history (seen items are never "
                               "recommended)")
        if item_id in q.exclude_item_ids:
            return ItemVerdict("FILTERED", "excluded by the request (filters.exclude_item_ids)")
        cats = m.catalog.categories[item]
        if q.exclude_categories and set(cats) & set(q.exclude_categories):
            hit = sorted(set(cats) & set(q.exclude_categories))
            return ItemVerdict("FILTERED", f"its category {', '.join(hit)} is excluded by the "
                                           "request")
        if q.include_categories and not set(cats) & set(q.include_categories):
            return ItemVerdict("FILTERED", f"its categories ({', '.join(cats) or 'none'}) are "
                                           "outside the request's included ones")
        rows = np.flatnonzero(cands.items == item)
        if len(rows):
            return ItemVerdict("CANDIDATE", "retrieved", int(rows[0]) + 1,
                               _sources(cands, int(rows[0])), len(cands))
        deep = self.deep_source().generate(*self._user(q), max_candidates=10 * max(
            len(cands), 1))
        rows = np.flatnonzero(deep.items == item)
        reason = f"not among the {len(cands)} candidates retrieved"
        if len(rows):
            return ItemVerdict("NOT_RETRIEVED", reason, int(rows[0]) + 1,
                               _sources(deep, int(rows[0])), len(cands))
        return ItemVerdict("NOT_RETRIEVED", reason, 0, [], len(cands))

    def deep_source(self) -> CandidateSource:
        """The generators asked for ten times as many proposals each (explanations only)."""
        cfg = self.source.config
        return CandidateSource(self.source.generators,
                               replace(cfg, max_candidates=10 * cfg.max_candidates), scale=10.0)

    def observe_drift(self, cands: Candidates) -> None:
        """Count one request's candidates (which generator proposed each slot) and user
        segment into the drift window: a few microseconds (python -m shortlist.perf.drift)."""
        self.drift.add(SOURCES, source_counts(cands, self._drift_sources))
        self.drift.add_label(SEGMENT, cands.segment)

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
