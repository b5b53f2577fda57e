"""What both write paths share: the serving version readers take without a lock, and how one
logged write is applied to a version (``online``: the embedded log; ``shared``: the stream)."""

from __future__ import annotations

from shortlist.common.events import UnknownEventType, check_name, normalise
from shortlist.retrieval.errors import InvalidEventType, ItemNotFound, NotReady
from shortlist.retrieval.eventlog import Interaction, ItemRecord
from shortlist.retrieval.retriever import Retriever

# Characters of a refused event type that its error message repeats.
MAX_SHOWN = 64


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


def event_type(retriever: Retriever, event: str) -> str:
    """``event`` normalised, as a write logs it, once the serving version's table knows it.

    Checked before the write is logged: a type the version does not know would otherwise be
    durable yet never applied. InvalidEventType (INVALID_ARGUMENT) names the types the version
    knows, for a malformed name too, so one refusal tells the caller what to send instead.
    """
    table = retriever.models.event_types
    name = normalise(event)
    if len(name) > MAX_SHOWN:  # never a name (32 at most); the message need not echo it all
        name = name[:MAX_SHOWN] + "..."
    try:
        check_name(name)
    except UnknownEventType as exc:
        known = ", ".join(n for n in table.names if n) or "none"
        raise InvalidEventType(f"{exc}; this model knows: {known}") from None
    try:
        table.code(name)
    except UnknownEventType as exc:
        raise InvalidEventType(str(exc)) from None
    return name


def apply_record(retriever: Retriever, record: Interaction | ItemRecord) -> bool:
    """Apply one logged write; False for an interaction this version cannot take: on an item
    it lacks, or of an event type its table lacks (it was accepted against another catalog or
    table: the log keeps it, this version skips it). Callers log what was skipped."""
    try:
        if isinstance(record, Interaction):
            retriever.apply_interaction(record.user_id, record.item_id, record.weight,
                                        record.timestamp, record.event)
        else:
            retriever.apply_item(record.item_id, record.title, list(record.categories),
                                 record.text)
    except (ItemNotFound, UnknownEventType):
        return False
    return True
