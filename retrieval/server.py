"""Build the retrieval gRPC server and load its models."""

from __future__ import annotations

import logging
import time

import grpc
from shortlist.common import artifacts, serving
from shortlist.v1 import retrieval_pb2, retrieval_pb2_grpc

from retrieval.bundle import RetrievalModels
from retrieval.retriever import Retriever
from retrieval.service import RetrievalService
from retrieval.settings import RetrievalSettings

logger = logging.getLogger(__name__)

SERVICE = retrieval_pb2.DESCRIPTOR.services_by_name["Retrieval"].full_name


def load_retriever(settings: RetrievalSettings) -> Retriever:
    """Resolve, verify against the manifest, and load a version; raises ArtifactError."""
    start = time.perf_counter()
    path = artifacts.resolve(settings.artifacts, settings.version)
    manifest = artifacts.verify(path)
    models = RetrievalModels.load(path, settings.hnsw_ef or None)
    logger.info("models loaded", extra={"fields": {
        "version": manifest.version, "items": len(models.catalog), "users": len(models.users),
        "seconds": round(time.perf_counter() - start, 2)}})
    return Retriever(models, manifest.version, settings.max_candidates_limit)


def create_server(settings: RetrievalSettings) -> tuple[grpc.Server, int]:
    """Start serving health (NOT_SERVING) at once, load the models, then report SERVING.

    Raises ArtifactError (after stopping the server) if the artifacts cannot be loaded.
    """
    server = serving.new_server(settings.max_workers, settings.max_message_bytes)
    service = RetrievalService(settings)
    retrieval_pb2_grpc.add_RetrievalServicer_to_server(service, server)
    health = serving.add_health_and_reflection(server, [SERVICE])
    port = serving.bind(server, settings.address)
    server.start()
    try:
        service.retriever = load_retriever(settings)
    except Exception:
        server.stop(0)
        raise
    serving.set_serving(health, [SERVICE])
    return server, port
