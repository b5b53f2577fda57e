"""Build the retrieval gRPC server: event log, models, version watcher, admin."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import grpc

from shortlist.common import artifacts, security, serving
from shortlist.common.admin import AdminService
from shortlist.common.edge import Edge
from shortlist.common.metrics import Metrics
from shortlist.common.versions import VersionWatcher
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.retrieval.eventlog import EventLog, EventLogError
from shortlist.retrieval.generators import Registry
from shortlist.retrieval.online import Prepared, RetrievalState
from shortlist.retrieval.retriever import Retriever
from shortlist.retrieval.service import RetrievalService
from shortlist.retrieval.settings import RetrievalSettings
from shortlist.retrieval.shared import SharedState
from shortlist.retrieval.stream import StreamError, StreamLog
from shortlist.v1 import admin_pb2, admin_pb2_grpc, retrieval_pb2, retrieval_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE = retrieval_pb2.DESCRIPTOR.services_by_name["Retrieval"].full_name
ADMIN = admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name


def loader(settings: RetrievalSettings, state: RetrievalState | SharedState,
           registry: Registry | None = None):
    """Load one (already verified) version and replay the event log onto it."""

    def load(path: Path) -> Prepared:
        start = time.perf_counter()
        manifest = artifacts.read_manifest(path)
        models = RetrievalModels.load(path, settings.hnsw_ef or None, registry)
        retriever = Retriever(models, manifest.version, settings.max_candidates_limit,
                              settings.drift_window)
        logger.info("models loaded", extra={"fields": {
            "version": manifest.version, "items": len(models.catalog),
            "users": len(models.users), "seconds": round(time.perf_counter() - start, 2)}})
        return state.prepare(retriever, manifest.data.get("events"))

    return load


def open_state(settings: RetrievalSettings) -> RetrievalState | SharedState:
    """The write path the backend setting names; StartupError if its store is unusable."""
    if settings.state_backend == "redis":
        url = security.secret(settings.redis_url)
        log = StreamLog(url, settings.redis_stream, settings.client_event_ttl_s,
                        settings.redis_timeout_s)
        try:
            found = log.durability()
        except StreamError as exc:
            log.close()
            raise serving.StartupError(f"cannot reach the shared state: {exc}",
                                       "redis_url") from exc
        if settings.redis_require_fsync and (found["appendonly"] != "yes"
                                             or found["appendfsync"] != "always"):
            log.close()
            raise serving.StartupError(
                f"redis at {log.where} would acknowledge writes before syncing them "
                f"(appendonly {found['appendonly']}, appendfsync {found['appendfsync']}); "
                "run it with --appendonly yes --appendfsync always", "redis_require_fsync")
        return SharedState(log, settings.consistency_wait_s)
    try:
        settings.event_log.parent.mkdir(parents=True, exist_ok=True)
        return RetrievalState(EventLog(settings.event_log))
    except (OSError, sqlite3.Error, EventLogError) as exc:
        raise serving.StartupError(f"cannot open the event log {settings.event_log}: {exc}",
                                   "event_log") from exc


def create_server(settings: RetrievalSettings,
                  registry: Registry | None = None) -> tuple[grpc.Server, int]:
    """Serve health (NOT_SERVING) at once, load models and replay the log, then SERVING.

    ``registry``: the generator classes artifacts may name (default: ``default_registry()``),
    e.g. a test's extra generator; the process entry point always uses the default.

    Raises ArtifactError if no version can be loaded, SecurityConfigError if the TLS settings
    are unusable and StartupError if the address, metrics port or event log is unusable, each
    with nothing left running.
    """
    credentials = security.server_credentials(settings)
    state = open_state(settings)
    watcher = VersionWatcher(settings.artifacts, loader(settings, state, registry),
                             lambda prepared, _version: state.swap(prepared),
                             settings.reload_interval_s, settings.version)
    metrics = Metrics("retrieval")
    metrics.watch_drift(lambda: state.retriever.drift if state.ready else None)
    # The token check first: a refused call never reaches the edge (nor the service).
    server = serving.new_server(settings.max_workers, settings.max_message_bytes,
                                [*security.server_interceptors(settings), Edge(metrics)],
                                max_concurrent_rpcs=settings.max_concurrent_rpcs)
    retrieval_pb2_grpc.add_RetrievalServicer_to_server(
        RetrievalService(settings, state), server)
    admin_pb2_grpc.add_AdminServicer_to_server(AdminService(settings.artifacts, watcher,
                                                           settings.version), server)
    health = serving.add_health_and_reflection(server, [SERVICE, ADMIN])
    try:
        watcher.target()  # a missing or empty artifact root: one ArtifactError, before any port
        port = serving.bind(server, settings.address, credentials)
        # Before start: a busy metrics port (StartupError) leaves nothing running behind it.
        serving.serve_metrics(metrics, settings)
    except BaseException:
        state.close()
        raise
    try:
        server.start()
        watcher.check_now()
        if not state.ready:
            raise artifacts.ArtifactError(watcher.last_error or f"{settings.artifacts}: "
                                          "nothing to serve")
    except BaseException:
        server.stop(0)
        metrics.close()
        state.close()
        raise
    watcher.start()
    serving.set_serving(health, [SERVICE, ADMIN])
    return server, port
