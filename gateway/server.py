"""Build the gateway gRPC server."""

from __future__ import annotations

import logging

import grpc

from shortlist.common import security, serving
from shortlist.common.edge import Edge
from shortlist.common.metrics import Metrics
from shortlist.gateway.service import GatewayService
from shortlist.gateway.settings import GatewaySettings
from shortlist.gateway.upstream import Upstream
from shortlist.v1 import gateway_pb2, gateway_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name


def create_server(settings: GatewaySettings) -> tuple[grpc.Server, int]:
    """The gateway holds no models: it reports SERVING as soon as it listens.

    Raises SecurityConfigError if the TLS settings are unusable and StartupError if the
    address or metrics port cannot be listened on, in both cases with nothing left running.
    """
    credentials = security.server_credentials(settings)
    if settings.candidates:
        logger.warning("SHORTLIST_GATEWAY_CANDIDATES overrides the candidate count tuning "
                       "chose (0 keeps the artifact's)",
                       extra={"fields": {"candidates": settings.candidates}})
    upstream = Upstream.from_settings(settings)
    metrics = Metrics("gateway")
    # The token check first: a refused call never reaches the edge (nor the service).
    server = serving.new_server(settings.max_workers, settings.max_message_bytes,
                                [*security.server_interceptors(settings), Edge(metrics)],
                                max_concurrent_rpcs=settings.max_concurrent_rpcs)
    gateway_pb2_grpc.add_GatewayServicer_to_server(
        GatewayService(settings, upstream), server)
    health = serving.add_health_and_reflection(server, [SERVICE])
    try:
        port = serving.bind(server, settings.address, credentials)
        # Before start: a busy metrics port (StartupError) leaves nothing running behind it.
        serving.serve_metrics(metrics, settings)
    except BaseException:
        upstream.close()
        raise
    server.start()
    serving.set_serving(health, [SERVICE])
    return server, port
