"""Retrieval's live state: the serving version plus every acknowledged write.

Writes (interactions, item upserts) go to the durable event log first, then to the in-memory
state, under one lock, so the log order is the apply order. A new artifact version is loaded
and brought up to date by replaying the log *outside* the lock, then the few writes that
arrived meanwhile are replayed under the lock and the version is swapped in: no write is lost
and readers never wait for a load.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from shortlist.retrieval.errors import ItemNotFound, NotReady
from shortlist.retrieval.eventlog import EventLog
from shortlist.retrieval.retriever import Retriever

logger = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A loaded version with the log replayed up to these sequence numbers."""

    retriever: Retriever
    items_seq: int
    interactions_seq: int


class RetrievalState:
    def __init__(self, log: EventLog) -> None:
        self.log = log
        self._lock = threading.Lock()
        self._retriever: Retriever | None = None

    @property
    def retriever(self) -> Retriever:
        r = self._retriever
        if r is None:
            raise NotReady("models are still loading")
        return r

    @property
    def ready(self) -> bool:
        return self._retriever is not None

    # -- versions ---------------------------------------------------------------------------

    def _replay(self, retriever: Retriever, items_after: int,
                interactions_after: int) -> tuple[int, int]:
        for rec in self.log.items(items_after):
            retriever.apply_item(rec.item_id, rec.title, list(rec.categories), rec.text)
            items_after = rec.seq
        skipped = 0
        for rec in self.log.interactions(interactions_after):
            try:
                retriever.apply_interaction(rec.user_id, rec.item_id, rec.weight, rec.timestamp)
            except ItemNotFound:
                skipped += 1  # the item was accepted by an older catalog: keep the log, skip
            interactions_after = rec.seq
        if skipped:
            logger.warning("replay skipped interactions with unknown items",
                           extra={"fields": {"skipped": skipped, "version": retriever.version}})
        return items_after, interactions_after

    def prepare(self, retriever: Retriever, events_through: dict | None) -> Prepared:
        """Replay what the version was not trained on (it records what it consumed)."""
        start = time.perf_counter()
        through = events_through or {}
        items_seq, inter_seq = self._replay(retriever, int(through.get("items_through", 0)),
                                            int(through.get("interactions_through", 0)))
        logger.info("event log replayed", extra={"fields": {
            "version": retriever.version, "items_seq": items_seq,
            "interactions_seq": inter_seq,
            "seconds": round(time.perf_counter() - start, 3)}})
        return Prepared(retriever, items_seq, inter_seq)

    def swap(self, prepared: Prepared) -> None:
        with self._lock:
            self._replay(prepared.retriever, prepared.items_seq, prepared.interactions_seq)
            old = self._retriever
            self._retriever = prepared.retriever
        logger.info("version swapped in", extra={"fields": {
            "version": prepared.retriever.version,
            "previous": old.version if old is not None else None}})

    # -- writes -----------------------------------------------------------------------------

    def record_interaction(self, user_id: str, item_id: str, weight: float,
                           timestamp: int) -> tuple[int, int]:
        """Durably log, then apply; returns (sequence, user's distinct-item count)."""
        with self._lock:
            retriever = self.retriever
            if item_id not in retriever.models.catalog.vocab:
                raise ItemNotFound(f"unknown item_id {item_id!r}")
            seq = self.log.append_interaction(user_id, item_id, weight, timestamp)
            return seq, retriever.apply_interaction(user_id, item_id, weight, timestamp)

    def upsert_item(self, item_id: str, title: str, categories: list[str],
                    text: str) -> tuple[int, bool]:
        with self._lock:
            retriever = self.retriever
            seq = self.log.append_item(item_id, title, categories, text)
            return seq, retriever.apply_item(item_id, title, categories, text)
