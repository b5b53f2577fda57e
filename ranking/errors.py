"""Ranking's typed errors; the gRPC edge maps each to the status its base class names."""

from shortlist.common import errors


class RankingError(errors.ServiceError):
    """Base class for ranking failures."""


class InvalidRequest(RankingError, errors.InvalidArgument):
    """The request is malformed."""


class NotReady(RankingError, errors.Unavailable):
    """No version is loaded yet."""


class VersionNotLoaded(RankingError, errors.FailedPrecondition):
    """The request names a version this server does not hold (retrieval swapped first)."""
