"""Gateway's typed errors; the gRPC edge (``shortlist.common.edge``) maps each to its status."""

from shortlist.common import errors


class GatewayError(errors.ServiceError):
    """Base class for gateway failures."""


class InvalidRequest(GatewayError, errors.InvalidArgument):
    """The request is malformed."""


class UpstreamFailed(GatewayError):
    """Retrieval or ranking failed. ``status`` is the upstream's own status when it describes
    the caller's request (NOT_FOUND, INVALID_ARGUMENT, ...), so the caller sees it as is;
    otherwise UNAVAILABLE: the dependency is down, the same request may succeed later."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class VariantVersionMismatch(GatewayError, errors.FailedPrecondition):
    """An experiment variant names a version its servers do not serve."""
