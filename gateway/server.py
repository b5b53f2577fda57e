"""Build the gateway gRPC server."""

from __future__ import annotations

import grpc

from gateway.service import GatewayService
from gateway.settings import GatewaySettings
from gateway.upstream import Upstream
from shortlist.common import security, serving
from shortlist.common.metrics import Metrics
from shortlist.v1 import gateway_pb2, gateway_pb2_grpc

SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name


def create_server(settings: GatewaySettings) -> tuple[grpc.Server, int]:
    """The gateway holds no models: it reports SERVING as soon as it listens.

    Raises SecurityConfigError (before anything starts) if the TLS settings are unusable.
    """
    credentials = security.server_credentials(settings)
    upstream = Upstream.from_settings(settings)
    server = serving.new_server(settings.max_workers, settings.max_message_bytes,
                                security.server_interceptors(settings),
                                max_concurrent_rpcs=settings.max_concurrent_rpcs)
    metrics = Metrics("gateway")
    gateway_pb2_grpc.add_GatewayServicer_to_server(
        GatewayService(settings, upstream, metrics), server)
    health = serving.add_health_and_reflection(server, [SERVICE])
    port = serving.bind(server, settings.address, credentials)
    server.start()
    serving.serve_metrics(metrics, settings)
    serving.set_serving(health, [SERVICE])
    return server, port
