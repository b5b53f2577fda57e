"""Retrieval's typed errors; the gRPC edge maps each to the status its base class names."""

from shortlist.common import errors
from shortlist.common.events import UnknownEventType


class RetrievalError(errors.ServiceError):
    """Base class for retrieval failures."""


class InvalidRequest(RetrievalError, errors.InvalidArgument):
    """The request is malformed."""


class InvalidEventType(InvalidRequest, UnknownEventType):
    """A write names an event type the serving version's table lacks, or a malformed one: the
    caller's mistake (INVALID_ARGUMENT), refused before anything is logged. Still an
    ``UnknownEventType`` for code that catches the model-level error."""


class ItemNotFound(RetrievalError, errors.NotFound):
    """A required item id is not in the catalog."""


class NotReady(RetrievalError, errors.Unavailable):
    """Models are not loaded yet."""


class WriteQueueFull(RetrievalError):
    """Too many writes are already waiting for the event log: refused at once, so a burst
    cannot queue (and hold request threads) without bound; the client may retry shortly."""

    status = "RESOURCE_EXHAUSTED"


class StateUnavailable(RetrievalError, errors.Unavailable):
    """The durable store of writes (the event log, or the shared Redis stream) cannot take a
    write now: it was not acknowledged, and may be retried."""


class Lagging(RetrievalError, errors.Unavailable):
    """This replica has not yet applied a write the request must see; another replica (or
    this one, a moment later) can answer it."""
