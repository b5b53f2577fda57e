"""Retrieval's typed errors; the service edge maps them to gRPC status codes."""


class RetrievalError(Exception):
    """Base class for retrieval failures."""


class InvalidRequest(RetrievalError):
    """The request is malformed (maps to INVALID_ARGUMENT)."""


class ItemNotFound(RetrievalError):
    """A required item id is not in the catalog (maps to NOT_FOUND)."""


class NotReady(RetrievalError):
    """Models are not loaded yet (maps to UNAVAILABLE)."""
