"""Ranking's typed errors; the service edge maps them to gRPC status codes."""


class RankingError(Exception):
    """Base class for ranking failures."""


class InvalidRequest(RankingError):
    """The request is malformed (maps to INVALID_ARGUMENT)."""
