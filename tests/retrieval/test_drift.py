"""Retrieval's drift gauges, from a real server (``create_server``) on free ports: traffic like
the reference's reads 0, cold traffic reads the hand-computed PSI once it fills the window."""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shortlist.common import artifacts
from shortlist.common.drift import EPSILON, RETRAIN, SEGMENT, SOURCES
from shortlist.common.stack import free_port
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.retrieval.server import create_server
from shortlist.retrieval.settings import RetrievalSettings
from shortlist.training.drift import reference_users
from shortlist.training.params import FitParams
from shortlist.v1 import retrieval_pb2, retrieval_pb2_grpc

WINDOW = 150  # the synthetic artifact's reference users: one request each fills the window


def drift(port: int, server: str) -> dict[str, tuple[float | None, float]]:
    """signal -> (PSI or None, observations) on the /metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    psi, obs = {}, {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("server") != server:
                continue
            if s.name == "shortlist_drift_psi":
                psi[s.labels["signal"]] = s.value
            elif s.name == "shortlist_drift_window_observations":
                obs[s.labels["signal"]] = s.value
    return {signal: (psi.get(signal), n) for signal, n in obs.items()}


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory) -> Iterator[tuple[retrieval_pb2_grpc.RetrievalStub, int]]:
    metrics_port = free_port()
    server, port = create_server(RetrievalSettings(
        address="127.0.0.1:0", artifacts=trained, metrics_port=metrics_port,
        event_log=tmp_path_factory.mktemp("retrieval-drift") / "events.db",
        drift_window=WINDOW))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield retrieval_pb2_grpc.RetrievalStub(channel), metrics_port
    channel.close()
    server.stop(0)


def test_reference_like_traffic_reads_zero_then_cold_traffic_drifts(trained, served):
    stub, metrics_port = served
    models = RetrievalModels.load(artifacts.resolve(trained))
    assert drift(metrics_port, "retrieval") == {SOURCES: (None, 0), SEGMENT: (None, 0)}
    users = reference_users(models, FitParams().seed)
    assert len(users) == WINDOW
    for user in users.tolist():
        stub.Retrieve(retrieval_pb2.RetrieveRequest(user_id=models.users.id(user)), timeout=10)
    got = drift(metrics_port, "retrieval")
    # the very requests the reference was drawn from: the same candidates, the same segments
    assert got[SOURCES][0] == pytest.approx(0.0, abs=1e-9)
    assert got[SOURCES][1] == models.drift.signals[SOURCES].observations
    assert got[SEGMENT] == (pytest.approx(0.0, abs=1e-12), WINDOW)

    for n in range(WINDOW):  # users the version never saw: the window forgets the others
        stub.Retrieve(retrieval_pb2.RetrieveRequest(user_id=f"cold-{n}"), timeout=10)
    got = drift(metrics_port, "retrieval")
    # all "new" against all "established": two bins at the floor on one side each
    assert got[SEGMENT] == (pytest.approx(2 * (1 - EPSILON) * math.log(1 / EPSILON)), WINDOW)
    assert got[SOURCES][0] > RETRAIN  # only the generators that serve new users propose
