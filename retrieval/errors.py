"""Retrieval's typed errors; the gRPC edge maps each to the status its base class names."""

from shortlist.common import errors


class RetrievalError(errors.ServiceError):
    """Base class for retrieval failures."""


class InvalidRequest(RetrievalError, errors.InvalidArgument):
    """The request is malformed."""


class ItemNotFound(RetrievalError, errors.NotFound):
    """A required item id is not in the catalog."""


class NotReady(RetrievalError, errors.Unavailable):
    """Models are not loaded yet."""
