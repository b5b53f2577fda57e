"""Build the gateway gRPC server."""

from __future__ import annotations

import grpc

from gateway.service import GatewayService
from gateway.settings import GatewaySettings
from gateway.upstream import Upstream
from shortlist.common import serving
from shortlist.v1 import gateway_pb2, gateway_pb2_grpc

SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name


def create_server(settings: GatewaySettings) -> tuple[grpc.Server, int]:
    """The gateway holds no models: it reports SERVING as soon as it listens."""
    server = serving.new_server(settings.max_workers, settings.max_message_bytes)
    upstream = Upstream(settings.retrieval_target, settings.ranking_target,
                        settings.max_message_bytes)
    gateway_pb2_grpc.add_GatewayServicer_to_server(GatewayService(settings, upstream), server)
    health = serving.add_health_and_reflection(server, [SERVICE])
    port = serving.bind(server, settings.address)
    server.start()
    serving.set_serving(health, [SERVICE])
    return server, port
