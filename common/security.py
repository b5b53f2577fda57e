"""Transport security and write authorisation, shared by the servers, the gateway and the CLI.

Both are off by default: the servers listen in plaintext on localhost, as before.

* TLS: a server with ``tls_cert`` and ``tls_key`` (PEM files) serves TLS; with ``tls_client_ca``
  as well it requires a client certificate signed by that CA (mutual TLS). Clients get channel
  credentials from ``channel_credentials`` (a CA to verify the server, optionally their own
  certificate and key).
* Tokens: a server with a non-empty ``write_token`` refuses the methods in ``PROTECTED``
  (writes and version changes) unless the call carries ``authorization: Bearer <token>``;
  reads stay open. ``token_channel`` attaches a token to every call a client makes.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable

import grpc
from pydantic import SecretStr

# Client-side plumbing lives with the client distribution; re-exported for the servers.
from shortlist.client.channel import (  # noqa: F401
    AUTHORIZATION,
    ClientConfigError,
    TokenClientInterceptor,
    channel_credentials,
    open_channel,
    read_pem,
    token_channel,
)

logger = logging.getLogger(__name__)

# Full method names (as a server sees them) that need the write token when one is configured.
PROTECTED = frozenset({
    "/shortlist.v1.Gateway/RecordInteraction",
    "/shortlist.v1.Gateway/UpsertItem",
    "/shortlist.v1.Gateway/SetVersion",
    "/shortlist.v1.Gateway/SetExperiment",
    "/shortlist.v1.Retrieval/RecordInteraction",
    "/shortlist.v1.Retrieval/UpsertItem",
    "/shortlist.v1.Admin/SetVersion",
})

# One error type for TLS options that cannot work, on either side of a channel.
SecurityConfigError = ClientConfigError


def server_credentials(settings) -> grpc.ServerCredentials | None:
    """TLS (or mTLS) credentials from a server's ``tls_*`` settings; None: plaintext."""
    cert, key, client_ca = settings.tls_cert, settings.tls_key, settings.tls_client_ca
    if not cert and not key:
        if client_ca:
            raise SecurityConfigError("tls_client_ca needs tls_cert and tls_key (mTLS is TLS "
                                      "with client certificates)")
        return None
    if not (cert and key):
        raise SecurityConfigError("tls_cert and tls_key must be set together")
    pair = (read_pem("tls_key", key), read_pem("tls_cert", cert))
    if client_ca:
        return grpc.ssl_server_credentials([pair],
                                           root_certificates=read_pem("tls_client_ca",
                                                                       client_ca),
                                           require_client_auth=True)
    return grpc.ssl_server_credentials([pair])


def secret(value: SecretStr | str) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


# ---- server side: bearer token on protected methods ----------------------------------------

def _bearer(metadata) -> str | None:
    """The token of an ``authorization: Bearer <token>`` entry; None when there is none."""
    for key, value in metadata or ():
        if key.lower() == AUTHORIZATION:
            scheme, _, token = (value if isinstance(value, str) else "").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


def _deny(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that fails with UNAUTHENTICATED."""

    def abort(_request, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Require ``authorization: Bearer <token>`` on the methods in ``protected``."""

    def __init__(self, token: SecretStr | str, protected: Iterable[str] = PROTECTED) -> None:
        token = secret(token)
        if not token:
            raise ValueError("an empty token protects nothing")
        self._token = token.encode()
        self._protected = frozenset(protected)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method not in self._protected:
            return handler
        supplied = _bearer(handler_call_details.invocation_metadata)
        if supplied is None:
            reason = (f"{method} needs a write token: send metadata "
                      "'authorization: Bearer <token>'")
        elif not hmac.compare_digest(supplied.encode(), self._token):
            reason = f"{method}: invalid bearer token"
        else:
            return handler
        logger.warning("unauthenticated call refused", extra={"fields": {
            "rpc": method, "reason": "missing token" if supplied is None else "wrong token"}})
        return _deny(handler, reason)


def server_interceptors(settings) -> list[grpc.ServerInterceptor]:
    """The interceptors a server's settings ask for (the write token check, if any)."""
    token = secret(settings.write_token)
    return [BearerTokenInterceptor(token)] if token else []
