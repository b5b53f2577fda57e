"""The Shortlist client: the ``shortlist.v1`` stubs plus a thin, safe-by-default wrapper.

Installed by the small ``shortlist-client`` distribution (grpcio and protobuf only)::

    from shortlist.client import Client

    with Client("127.0.0.1:50051") as client:
        response = client.recommend("1", k=10)
"""

from shortlist.client.channel import ClientConfigError
from shortlist.client.client import DEFAULT_TARGET, TARGET_ENV, TOKEN_ENV, Client, ShortlistError

__all__ = ["Client", "ClientConfigError", "DEFAULT_TARGET", "ShortlistError", "TARGET_ENV",
           "TOKEN_ENV"]
