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

import collections
import hmac
import logging
from collections.abc import Iterable
from pathlib import Path

import grpc
from pydantic import SecretStr

logger = logging.getLogger(__name__)

# Full method names (as a server sees them) that need the write token when one is configured.
PROTECTED = frozenset({
    "/shortlist.v1.Gateway/RecordInteraction",
    "/shortlist.v1.Gateway/UpsertItem",
    "/shortlist.v1.Gateway/SetVersion",
    "/shortlist.v1.Retrieval/RecordInteraction",
    "/shortlist.v1.Retrieval/UpsertItem",
    "/shortlist.v1.Admin/SetVersion",
})

AUTHORIZATION = "authorization"


class SecurityConfigError(ValueError):
    """TLS settings that cannot work (half a key pair, an unreadable PEM file)."""


def _read_pem(setting: str, path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SecurityConfigError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from exc
    if b"-----BEGIN " not in data:
        raise SecurityConfigError(f"{setting}: {path} is not a PEM file")
    return data


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
    pair = (_read_pem("tls_key", key), _read_pem("tls_cert", cert))
    if client_ca:
        return grpc.ssl_server_credentials([pair],
                                           root_certificates=_read_pem("tls_client_ca",
                                                                       client_ca),
                                           require_client_auth=True)
    return grpc.ssl_server_credentials([pair])


def channel_credentials(ca: str = "", cert: str = "", key: str = "",
                        prefix: str = "tls_") -> grpc.ChannelCredentials | None:
    """Client TLS credentials; None (plaintext) when neither a CA nor a certificate is given.

    ``ca`` verifies the server (empty: the system's roots); ``cert``/``key`` are the client's
    certificate for servers that require one. ``prefix`` names the settings in errors.
    """
    if not (ca or cert or key):
        return None
    if bool(cert) != bool(key):
        raise SecurityConfigError(f"{prefix}cert and {prefix}key must be set together")
    return grpc.ssl_channel_credentials(
        root_certificates=_read_pem(f"{prefix}ca", ca) if ca else None,
        private_key=_read_pem(f"{prefix}key", key) if key else None,
        certificate_chain=_read_pem(f"{prefix}cert", cert) if cert else None,
    )


def open_channel(target: str, credentials: grpc.ChannelCredentials | None = None,
                 options: Iterable[tuple] = (), server_name: str = "",
                 token: str = "") -> grpc.Channel:
    """A channel, TLS when ``credentials`` are given, sending ``token`` (if any) on every call.

    ``server_name`` overrides the name checked against the server's certificate.
    """
    opts = list(options)
    if credentials is None:
        channel = grpc.insecure_channel(target, options=opts)
    else:
        if server_name:
            opts.append(("grpc.ssl_target_name_override", server_name))
        channel = grpc.secure_channel(target, credentials, options=opts)
    return token_channel(channel, token) if token else channel


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


# ---- client side: send a token on every call -----------------------------------------------

class _CallDetails(collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                         "compression")), grpc.ClientCallDetails):
    pass


class TokenClientInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                             grpc.StreamUnaryClientInterceptor,
                             grpc.StreamStreamClientInterceptor):
    """Add ``authorization: Bearer <token>`` to every call."""

    def __init__(self, token: SecretStr | str) -> None:
        self._header = (AUTHORIZATION, f"Bearer {secret(token)}")

    def _details(self, d: grpc.ClientCallDetails) -> _CallDetails:
        metadata = [m for m in (d.metadata or ()) if m[0].lower() != AUTHORIZATION]
        return _CallDetails(d.method, d.timeout, [*metadata, self._header], d.credentials,
                            getattr(d, "wait_for_ready", None), getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


def token_channel(channel: grpc.Channel, token: SecretStr | str) -> grpc.Channel:
    """``channel`` sending ``token`` on every call (unchanged when the token is empty)."""
    token = secret(token)
    return grpc.intercept_channel(channel, TokenClientInterceptor(token)) if token else channel
