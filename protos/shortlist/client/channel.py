"""Client channels: TLS credentials, a bearer token on every call, retries only where safe.

Shared by the thin client, the CLI and the gateway's own upstream channels, so there is one
way to open a Shortlist channel. Depends on grpcio only.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable
from pathlib import Path

import grpc

AUTHORIZATION = "authorization"


class ClientConfigError(ValueError):
    """TLS options that cannot work (half a key pair, an unreadable PEM file)."""


def read_pem(setting: str, path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ClientConfigError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from exc
    if b"-----BEGIN " not in data:
        raise ClientConfigError(f"{setting}: {path} is not a PEM file")
    return data


def channel_credentials(ca: str = "", cert: str = "", key: str = "",
                        prefix: str = "tls_") -> grpc.ChannelCredentials | None:
    """Client TLS credentials; None (plaintext) when neither a CA nor a certificate is given.

    ``ca`` verifies the server (empty: the system's roots); ``cert``/``key`` are the client's
    certificate for servers that require one. ``prefix`` names the options in errors.
    """
    if not (ca or cert or key):
        return None
    if bool(cert) != bool(key):
        raise ClientConfigError(f"{prefix}cert and {prefix}key must be set together")
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(f"{prefix}ca", ca) if ca else None,
        private_key=read_pem(f"{prefix}key", key) if key else None,
        certificate_chain=read_pem(f"{prefix}cert", cert) if cert else None,
    )


_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:", "xds:")


def channel_target(value: str) -> str:
    """A gRPC target from an address setting: ``host:port``, a comma-separated list of
    ``IP:port`` replicas (``ipv4:``/``ipv6:`` targets, balanced by ``round_robin``), or any
    gRPC target URI as is (``dns:///name:port`` for replicas behind one DNS name).

    Raises ValueError for a list holding host names: gRPC resolves a list of literal IPs only;
    replicas by name go behind one DNS name.
    """
    value = value.strip()
    if value.startswith(_SCHEMES) or "," not in value:
        return value
    parts = [p.strip() for p in value.split(",") if p.strip()]
    hosts = [p.rsplit(":", 1)[0] if ":" in p else "" for p in parts]
    if all(h.startswith("[") and h.endswith("]") for h in hosts):
        return "ipv6:" + ",".join(parts)
    if all(h.count(".") == 3 and h.replace(".", "").isdigit() for h in hosts):
        return "ipv4:" + ",".join(parts)
    raise ValueError(f"{value!r}: a list of replicas must be IP:port pairs (gRPC resolves no "
                     "host names in a list); put named replicas behind one DNS name and use "
                     "dns:///NAME:PORT")


def balanced_service_config(config: str, health_service: str = "") -> str:
    """``config`` (a service config, e.g. ``retry_service_config``'s) balancing calls over
    every address the target resolves to (``round_robin``; gRPC's default, ``pick_first``,
    sends everything to one replica), and with ``health_service`` set, only over the replicas
    whose grpc.health.v1 status for it is SERVING (a replica still loading, or draining, gets
    no calls)."""
    merged = json.loads(config)
    merged["loadBalancingConfig"] = [{"round_robin": {}}]
    if health_service:
        merged["healthCheckConfig"] = {"serviceName": health_service}
    return json.dumps(merged)


def retry_service_config(methods: Iterable[tuple[str, str]], max_attempts: int = 3,
                         initial_backoff_s: float = 0.01, max_backoff_s: float = 0.1) -> str:
    """A gRPC service config retrying ``(service, method)`` pairs on UNAVAILABLE.

    Only idempotent calls belong here: a write that timed out may still have been applied, so
    retrying it blindly could apply it twice. gRPC retries within the call's own deadline.
    """
    return json.dumps({"methodConfig": [{
        "name": [{"service": s, "method": m} for s, m in methods],
        "retryPolicy": {
            "maxAttempts": max_attempts, "initialBackoff": f"{initial_backoff_s}s",
            "maxBackoff": f"{max_backoff_s}s", "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }]})


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


class _CallDetails(collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                         "compression")), grpc.ClientCallDetails):
    pass


class TokenClientInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                             grpc.StreamUnaryClientInterceptor,
                             grpc.StreamStreamClientInterceptor):
    """Add ``authorization: Bearer <token>`` to every call.

    An interceptor rather than call credentials: gRPC sends call credentials only over TLS,
    and a token is also useful on a plaintext loopback deployment.
    """

    def __init__(self, token: str) -> None:
        self._header = (AUTHORIZATION, f"Bearer {token}")

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


def token_channel(channel: grpc.Channel, token: str) -> grpc.Channel:
    """``channel`` sending ``token`` on every call (unchanged when the token is empty)."""
    return grpc.intercept_channel(channel, TokenClientInterceptor(token)) if token else channel
