"""What both write paths share: the serving version readers take without a lock, and how one
logged write is applied to a version (``online``: the embedded log; ``shared``: the stream)."""

from __future__ import annotations

from shortlist.retrieval.errors import ItemNotFound, NotReady
from shortlist.retrieval.eventlog import Interaction, ItemRecord
from shortlist.retrieval.retriever import Retriever


class ServingVersion:
    """Holds the serving ``Retriever``; a reader takes it once per request (one reference read,
    no lock), so a swap never changes the version under a request."""

    _retriever: Retriever | None = None

    @property
    def retriever(self) -> Retriever:
        r = self._retriever
        if r is None:
            raise NotReady("models are still loading")
        return r

    @property
    def ready(self) -> bool:
        return self._retriever is not None


def apply_record(retriever: Retriever, record: Interaction | ItemRecord) -> bool:
    """Apply one logged write; False for an interaction on an item this version lacks (it was
    accepted against another catalog: the log keeps it, this version skips it)."""
    try:
        if isinstance(record, Interaction):
            retriever.apply_interaction(record.user_id, record.item_id, record.weight,
                                        record.timestamp)
        else:
            retriever.apply_item(record.item_id, record.title, list(record.categories),
                                 record.text)
    except ItemNotFound:
        return False
    return True
