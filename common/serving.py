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


def new_server(max_workers: int, max_message_bytes: int = MAX_MESSAGE_BYTES) -> grpc.Server:
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
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


def bind(server: grpc.Server, address: str) -> int:
    """Bind ``host:port`` (port 0 picks a free one) and return the bound port."""
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    return port


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

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    settings = settings_factory()
    configure_logging(settings.log_level)
    log = logging.getLogger(name)
    try:
        server, port = create_server(settings)
    except ArtifactError as exc:
        log.error("cannot load artifacts", extra={"fields": {"error": str(exc)}})
        return 2
    log.info("serving", extra={"fields": {"address": settings.address, "port": port}})
    run_until_signal(server, settings.grace_seconds)
    return 0
