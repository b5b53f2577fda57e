"""Build the gateway gRPC server."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import grpc

from shortlist.common import security, serving
from shortlist.common.edge import Edge
from shortlist.common.impressions import ImpressionLog, ImpressionLogError
from shortlist.common.metrics import Metrics
from shortlist.gateway.experiment_metrics import ExperimentMetrics
from shortlist.gateway.experiments import ExperimentFile, Experiments
from shortlist.gateway.service import GatewayService
from shortlist.gateway.settings import GatewaySettings
from shortlist.gateway.upstream import Upstream, UpstreamPool
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
    upstreams = UpstreamPool(settings, Upstream.from_settings(settings))
    metrics = Metrics("gateway")
    impressions = open_impressions(settings)
    experiments = Experiments(
        ExperimentFile(settings.experiment_file) if settings.experiment_file else None,
        settings.experiment_poll_s, on_change=lambda plan: upstreams.prepare(plan.targets()))
    # The token check first: a refused call never reaches the edge (nor the service).
    server = serving.new_server(settings.max_workers, settings.max_message_bytes,
                                [*security.server_interceptors(settings), Edge(metrics)],
                                max_concurrent_rpcs=settings.max_concurrent_rpcs)
    service = GatewayService(settings, upstreams, experiments,
                             ExperimentMetrics(metrics.registry), impressions)
    gateway_pb2_grpc.add_GatewayServicer_to_server(service, server)
    health = serving.add_health_and_reflection(server, [SERVICE])

    def close() -> None:
        experiments.stop()
        service.close()
        if impressions is not None:
            impressions.close()  # what was served is on disk before the process exits
        upstreams.close()

    try:
        experiments.start()
        port = serving.bind(server, settings.address, credentials)
        # Before start: a busy metrics port (StartupError) leaves nothing running behind it.
        serving.serve_metrics(metrics, settings)
    except BaseException:
        close()
        raise
    server.start()
    serving.close_on_termination(server, close)
    serving.set_serving(health, [SERVICE])
    return server, port


def open_impressions(settings: GatewaySettings) -> ImpressionLog | None:
    """The impressions log, or None when off; StartupError names the setting if the file
    cannot be opened."""
    if not settings.impressions_log:
        return None
    try:
        Path(settings.impressions_log).parent.mkdir(parents=True, exist_ok=True)
        return ImpressionLog(settings.impressions_log,
                             retention_s=settings.impressions_retention_days * 86400.0,
                             max_queue=settings.impressions_queue)
    except (OSError, sqlite3.Error, ImpressionLogError) as exc:
        raise serving.StartupError(f"cannot open the impressions log "
                                   f"{settings.impressions_log}: {exc}",
                                   "impressions_log") from exc
