"""Settings every server shares; each process subclasses it with its own env prefix."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class ServerSettings(BaseSettings):
    max_workers: int = Field(8, ge=1, description="gRPC worker threads")
    max_concurrent_rpcs: int = Field(64, ge=0,
                                     description="calls in flight before new ones get "
                                                 "RESOURCE_EXHAUSTED; 0: no limit")
    max_message_bytes: int = Field(4 * 1024 * 1024, description="gRPC max message size")
    tls_cert: str = Field("", description="PEM certificate (chain) to serve TLS with; with "
                                          "tls_key: TLS on, empty: plaintext")
    tls_key: str = Field("", description="PEM private key of tls_cert")
    tls_client_ca: str = Field("", description="PEM CA bundle; set: require client certificates "
                                               "signed by it (mutual TLS; needs tls_cert)")
    metrics_port: int | None = Field(None, ge=0, le=65535,
                                     description="port of the Prometheus /metrics endpoint "
                                                 "(0 picks a free one, logged); unset: none")
    metrics_host: str = Field("127.0.0.1", description="address the metrics endpoint binds")
    grace_seconds: float = Field(5.0, description="drain time for in-flight calls on SIGTERM")
    log_level: str = Field("INFO", description="logging level")
