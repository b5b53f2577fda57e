"""Build the ranking gRPC server and load its models."""

from __future__ import annotations

import logging
import time

import grpc
from shortlist.common import artifacts, serving
from shortlist.v1 import ranking_pb2, ranking_pb2_grpc

from ranking.bundle import RankingModels
from ranking.service import Loaded, RankingService
from ranking.settings import RankingSettings

logger = logging.getLogger(__name__)

SERVICE = ranking_pb2.DESCRIPTOR.services_by_name["Ranking"].full_name


def load_models(settings: RankingSettings) -> Loaded:
    """Resolve, verify against the manifest, and load a version; raises ArtifactError."""
    start = time.perf_counter()
    path = artifacts.resolve(settings.artifacts, settings.version)
    manifest = artifacts.verify(path)
    models = RankingModels.load(path)
    if settings.mmr_lambda is not None:
        models.config.mmr_lambda = settings.mmr_lambda
    logger.info("models loaded", extra={"fields": {
        "version": manifest.version, "items": len(models.catalog),
        "trees": models.ranker.booster.num_trees(),
        "seconds": round(time.perf_counter() - start, 2)}})
    return Loaded(models, models.pipeline(), manifest.version)


def create_server(settings: RankingSettings) -> tuple[grpc.Server, int]:
    """Start serving health (NOT_SERVING) at once, load the models, then report SERVING."""
    server = serving.new_server(settings.max_workers, settings.max_message_bytes)
    service = RankingService(settings)
    ranking_pb2_grpc.add_RankingServicer_to_server(service, server)
    health = serving.add_health_and_reflection(server, [SERVICE])
    port = serving.bind(server, settings.address)
    server.start()
    try:
        service.loaded = load_models(settings)
    except Exception:
        server.stop(0)
        raise
    serving.set_serving(health, [SERVICE])
    return server, port
