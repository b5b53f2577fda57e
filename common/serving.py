"""gRPC server plumbing shared by the three servers: health, reflection, graceful shutdown."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterable
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def new_server(max_workers: int, max_message_bytes: int = MAX_MESSAGE_BYTES,
               interceptors: Iterable[grpc.ServerInterceptor] = (),
               max_concurrent_rpcs: int | None = None) -> grpc.Server:
    """A thread-pool server. Past ``max_concurrent_rpcs`` calls in flight, gRPC answers
    RESOURCE_EXHAUSTED at once instead of queueing without bound (overload protection)."""
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        interceptors=list(interceptors),
        maximum_concurrent_rpcs=max_concurrent_rpcs or None,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )


def add_health_and_reflection(
    server: grpc.Server, service_names: Iterable[str]
) -> health.HealthServicer:
    """Register grpc.health.v1 (every service NOT_SERVING until set) and server reflection."""
    names = list(service_names)
    servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ["", *names]:
        servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME],
        server,
    )
    return servicer


def set_serving(servicer: health.HealthServicer, service_names: Iterable[str]) -> None:
    for name in ["", *service_names]:
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)


def bind(server: grpc.Server, address: str,
         credentials: grpc.ServerCredentials | None = None) -> int:
    """Bind ``host:port`` (port 0 picks a free one) and return the bound port.

    With ``credentials`` (see ``security.server_credentials``) the port serves TLS only.
    """
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    return port


def serve_metrics(metrics, settings) -> int | None:
    """Start the Prometheus endpoint if ``settings.metrics_port`` is set; its bound port."""
    if settings.metrics_port is None:
        return None
    return metrics.serve(settings.metrics_host, settings.metrics_port)


def run_until_signal(server: grpc.Server, grace_s: float) -> None:
    """Block until SIGTERM/SIGINT, then stop accepting, drain in-flight calls and return."""
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        logger.info("shutdown requested", extra={"fields": {"signal": signum}})
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    stop.wait()
    server.stop(grace_s).wait()
    logger.info("stopped")


def run_main(name: str, settings_factory, create_server) -> int:
    """The body of every server's ``main()``: settings, logging, load, serve until SIGTERM."""
    import os

    from shortlist.common.artifacts import ArtifactError
    from shortlist.common.logs import configure_logging
    from shortlist.common.security import SecurityConfigError

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    settings = settings_factory()
    configure_logging(settings.log_level)
    log = logging.getLogger(name)
    try:
        server, port = create_server(settings)
    except ArtifactError as exc:
        log.error("cannot load artifacts", extra={"fields": {"error": str(exc)}})
        return 2
    except SecurityConfigError as exc:
        log.error("invalid TLS settings", extra={"fields": {"error": str(exc)}})
        return 2
    log.info("serving", extra={"fields": {
        "address": settings.address, "port": port, "tls": bool(settings.tls_cert),
        "mtls": bool(settings.tls_cert and settings.tls_client_ca),
        "write_token": bool(settings.write_token.get_secret_value())}})
    run_until_signal(server, settings.grace_seconds)
    return 0
