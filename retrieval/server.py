"""Build the retrieval gRPC server: event log, models, version watcher, admin."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import grpc

from retrieval.bundle import RetrievalModels
from retrieval.eventlog import EventLog
from retrieval.online import Prepared, RetrievalState
from retrieval.retriever import Retriever
from retrieval.service import RetrievalService
from retrieval.settings import RetrievalSettings
from shortlist.common import artifacts, security, serving
from shortlist.common.admin import AdminService
from shortlist.common.metrics import Metrics
from shortlist.common.versions import VersionWatcher
from shortlist.v1 import admin_pb2, admin_pb2_grpc, retrieval_pb2, retrieval_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE = retrieval_pb2.DESCRIPTOR.services_by_name["Retrieval"].full_name
ADMIN = admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name


def loader(settings: RetrievalSettings, state: RetrievalState):
    """Load one (already verified) version and replay the event log onto it."""

    def load(path: Path) -> Prepared:
        start = time.perf_counter()
        manifest = artifacts.read_manifest(path)
        models = RetrievalModels.load(path, settings.hnsw_ef or None)
        retriever = Retriever(models, manifest.version, settings.max_candidates_limit)
        logger.info("models loaded", extra={"fields": {
            "version": manifest.version, "items": len(models.catalog),
            "users": len(models.users), "seconds": round(time.perf_counter() - start, 2)}})
        return state.prepare(retriever, manifest.data.get("events"))

    return load


def create_server(settings: RetrievalSettings) -> tuple[grpc.Server, int]:
    """Serve health (NOT_SERVING) at once, load models and replay the log, then SERVING.

    Raises ArtifactError (after stopping the server) if no version can be loaded, and
    SecurityConfigError (before anything starts) if the TLS settings are unusable.
    """
    credentials = security.server_credentials(settings)
    settings.event_log.parent.mkdir(parents=True, exist_ok=True)
    state = RetrievalState(EventLog(settings.event_log))
    watcher = VersionWatcher(settings.artifacts, loader(settings, state),
                             lambda prepared, _version: state.swap(prepared),
                             settings.reload_interval_s, settings.version)
    server = serving.new_server(settings.max_workers, settings.max_message_bytes,
                                security.server_interceptors(settings),
                                max_concurrent_rpcs=settings.max_concurrent_rpcs)
    metrics = Metrics("retrieval")
    retrieval_pb2_grpc.add_RetrievalServicer_to_server(
        RetrievalService(settings, state, metrics), server)
    admin_pb2_grpc.add_AdminServicer_to_server(AdminService(settings.artifacts, watcher,
                                                           settings.version), server)
    health = serving.add_health_and_reflection(server, [SERVICE, ADMIN])
    port = serving.bind(server, settings.address, credentials)
    server.start()
    watcher.check_now()
    if not state.ready:
        server.stop(0)
        raise artifacts.ArtifactError(watcher.last_error or f"{settings.artifacts}: nothing "
                                      "to serve")
    watcher.start()
    serving.serve_metrics(metrics, settings)
    serving.set_serving(health, [SERVICE, ADMIN])
    return server, port
