"""The kinds of failure a request can meet, named by the gRPC status they map to.

Each package's typed errors subclass one of these (``retrieval.errors.ItemNotFound`` is a
``NotFound``), so domain code says what went wrong without importing grpc, and the one gRPC
edge (``shortlist.common.edge``) turns the ``status`` name into a status code.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A failure to report to the caller with ``status`` (a grpc.StatusCode name)."""

    status = "UNKNOWN"


class InvalidArgument(ServiceError):
    """The request is malformed or out of bounds: retrying it cannot help."""

    status = "INVALID_ARGUMENT"


class NotFound(ServiceError):
    status = "NOT_FOUND"


class Unavailable(ServiceError):
    """Not ready or a dependency is down: the same request may succeed later."""

    status = "UNAVAILABLE"


class FailedPrecondition(ServiceError):
    """The system is not in the state the request needs (a version not loaded here)."""

    status = "FAILED_PRECONDITION"
