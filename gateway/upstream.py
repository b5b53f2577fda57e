"""Clients for retrieval and ranking: one channel each, every call with a deadline.

Each channel balances over every replica its target names (a list of IP:port, or a DNS name
with several addresses) with ``round_robin``, sending calls only to replicas whose health is
SERVING; a retried idempotent call is picked afresh, so it lands on another replica when one
is down or refuses (a retrieval replica that has not applied the user's latest write answers
UNAVAILABLE). Plaintext by default; TLS (and mTLS) with ``credentials``, and every call carries
``token`` (retrieval's and ranking's write token) when one is given.
"""

from __future__ import annotations

import grpc

from shortlist.client.channel import balanced_service_config, channel_target, retry_service_config
from shortlist.common import security
from shortlist.v1 import admin_pb2_grpc, ranking_pb2_grpc, retrieval_pb2_grpc

# Idempotent reads retry on UNAVAILABLE with backoff; gRPC applies this per call. Writes
# (RecordInteraction, UpsertItem, SetVersion) are not listed: they are never retried blindly.
_IDEMPOTENT = [("shortlist.v1.Retrieval", m) for m in ("Retrieve", "SimilarItems", "SearchItems")]
_IDEMPOTENT += [("shortlist.v1.Ranking", "Rank"), ("shortlist.v1.Admin", "ListVersions")]
SERVICE_CONFIG = retry_service_config(_IDEMPOTENT)


def channel(target: str, max_message_bytes: int,
            credentials: grpc.ChannelCredentials | None = None, server_name: str = "",
            token: str = "", health_service: str = "") -> grpc.Channel:
    options = [
        ("grpc.service_config", balanced_service_config(SERVICE_CONFIG, health_service)),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # Reconnect quickly when a restarted server comes back.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]
    return security.open_channel(channel_target(target), credentials, options, server_name,
                                 token)


class Upstream:
    def __init__(self, retrieval_target: str, ranking_target: str, max_message_bytes: int,
                 credentials: grpc.ChannelCredentials | None = None, server_name: str = "",
                 token: str = "") -> None:
        tls = {"credentials": credentials, "server_name": server_name, "token": token}
        self._channels = [
            channel(retrieval_target, max_message_bytes, **tls,
                    health_service="shortlist.v1.Retrieval"),
            channel(ranking_target, max_message_bytes, **tls,
                    health_service="shortlist.v1.Ranking")]
        self.retrieval = retrieval_pb2_grpc.RetrievalStub(self._channels[0])
        self.ranking = ranking_pb2_grpc.RankingStub(self._channels[1])
        self.retrieval_admin = admin_pb2_grpc.AdminStub(self._channels[0])
        self.ranking_admin = admin_pb2_grpc.AdminStub(self._channels[1])

    @classmethod
    def from_settings(cls, settings, retrieval_target: str = "",
                      ranking_target: str = "") -> Upstream:
        """Targets (the settings' unless given), TLS and token from the gateway's
        ``upstream_*`` settings."""
        credentials = security.channel_credentials(
            settings.upstream_tls_ca, settings.upstream_tls_cert, settings.upstream_tls_key,
            prefix="upstream_tls_")
        return cls(retrieval_target or settings.retrieval_target,
                   ranking_target or settings.ranking_target,
                   settings.max_message_bytes, credentials, settings.upstream_tls_server_name,
                   security.secret(settings.upstream_token))

    def close(self) -> None:
        for ch in self._channels:
            ch.close()


class UpstreamPool:
    """The gateway's own upstream and those of experiment variants that name their own
    servers, one ``Upstream`` per (retrieval, ranking) pair, opened before a plan using them
    is installed (``prepare``) and kept until the gateway stops: a request still in flight
    on an experiment just replaced keeps working, and a pair used again reconnects nothing.
    """

    def __init__(self, settings, default: Upstream) -> None:
        self._settings = settings
        self.default = default
        self._own: dict[tuple[str, str], Upstream] = {}

    def get(self, retrieval_target: str = "", ranking_target: str = "") -> Upstream:
        if not retrieval_target:
            return self.default
        return self._own[(retrieval_target, ranking_target)]

    def prepare(self, pairs) -> None:
        new = {pair: Upstream.from_settings(self._settings, *pair)
               for pair in pairs if pair not in self._own}
        if new:
            self._own = {**self._own, **new}  # one reference swap; readers never see half

    def close(self) -> None:
        for upstream in [self.default, *self._own.values()]:
            upstream.close()
