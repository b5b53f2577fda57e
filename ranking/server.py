"""Build the ranking gRPC server and load its models."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import grpc

from shortlist.common import artifacts, security, serving
from shortlist.common.admin import AdminService
from shortlist.common.edge import Edge
from shortlist.common.metrics import Metrics
from shortlist.common.versions import VersionWatcher
from shortlist.ranking.bundle import RankingModels
from shortlist.ranking.compiled import CompileError
from shortlist.ranking.ranker import LambdaRanker
from shortlist.ranking.service import RankingService
from shortlist.ranking.settings import RankingSettings
from shortlist.ranking.state import LoadedVersion, RankingState
from shortlist.v1 import admin_pb2, admin_pb2_grpc, ranking_pb2, ranking_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE = ranking_pb2.DESCRIPTOR.services_by_name["Ranking"].full_name
ADMIN = admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name


def load_models(settings: RankingSettings, path: Path) -> LoadedVersion:
    """Load one (already verified) version."""
    start = time.perf_counter()
    manifest = artifacts.read_manifest(path)
    models = RankingModels.load(path)
    if settings.mmr_lambda is not None:
        # The artifact owns model behaviour (tuning chose its value); a setting may override
        # it, but never silently.
        logger.warning("SHORTLIST_RANKING_MMR_LAMBDA overrides the tuned value",
                       extra={"fields": {"version": manifest.version,
                                         "tuned": models.config.mmr_lambda,
                                         "setting": settings.mmr_lambda}})
        models.config.mmr_lambda = settings.mmr_lambda
    compiled = compile_ranker(settings, models.ranker, manifest.version)
    logger.info("models loaded", extra={"fields": {
        "version": manifest.version, "items": len(models.catalog),
        "trees": models.ranker.booster.num_trees(), "compiled": compiled,
        "seconds": round(time.perf_counter() - start, 2)}})
    return LoadedVersion.of(models, manifest.version, settings.drift_window)


def compile_ranker(settings: RankingSettings, ranker: LambdaRanker, version: str) -> str:
    """Compile the ranker when the settings ask for it: "cached", "compiled", "off" or
    "failed" (LightGBM scores, and a warning says why)."""
    if not settings.compile_ranker:
        return "off"
    start = time.perf_counter()
    try:
        cache = Path(settings.compile_cache).expanduser() if settings.compile_cache else None
        cached = ranker.compile(cache)
    except CompileError as e:
        logger.warning("the ranker is served by LightGBM: %s", e,
                       extra={"fields": {"version": version}})
        return "failed"
    if not cached:
        logger.info("ranker compiled", extra={"fields": {
            "version": version, "seconds": round(time.perf_counter() - start, 2)}})
    return "cached" if cached else "compiled"


def create_server(settings: RankingSettings) -> tuple[grpc.Server, int]:
    """Serve health (NOT_SERVING) at once, load the models, then report SERVING.

    Raises ArtifactError if no version can be loaded, SecurityConfigError if the TLS settings
    are unusable and StartupError if the address or metrics port cannot be listened on, each
    with nothing left running.
    """
    credentials = security.server_credentials(settings)
    metrics = Metrics("ranking")
    state = RankingState()
    metrics.watch_drift(lambda: state.current.drift if state.ready else None)
    service = RankingService(settings, state)
    watcher = VersionWatcher(settings.artifacts, lambda path: load_models(settings, path),
                             state.install, settings.reload_interval_s, settings.version)
    watcher.target()  # a missing or empty artifact root: one ArtifactError, before any port
    # The token check first: a refused call never reaches the edge (nor the service).
    server = serving.new_server(settings.max_workers, settings.max_message_bytes,
                                [*security.server_interceptors(settings), Edge(metrics)],
                                max_concurrent_rpcs=settings.max_concurrent_rpcs)
    ranking_pb2_grpc.add_RankingServicer_to_server(service, server)
    admin_pb2_grpc.add_AdminServicer_to_server(AdminService(settings.artifacts, watcher,
                                                           settings.version), server)
    health = serving.add_health_and_reflection(server, [SERVICE, ADMIN])
    port = serving.bind(server, settings.address, credentials)
    # Before start: a busy metrics port (StartupError) leaves nothing running behind it.
    serving.serve_metrics(metrics, settings)
    try:
        server.start()
        watcher.check_now()
        if not state.ready:
            raise artifacts.ArtifactError(watcher.last_error or f"{settings.artifacts}: "
                                          "nothing to serve")
    except BaseException:
        server.stop(0)
        metrics.close()
        raise
    watcher.start()
    serving.set_serving(health, [SERVICE, ADMIN])
    return server, port
