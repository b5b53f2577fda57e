"""Ranking's drift gauges, from real servers (``create_server``) on free ports: the reference's
own requests read (close to) 0, unpopular candidates drift, other orders and business rules are
not counted, a new version starts an empty window, and a version without a reference serves
without drift gauges."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from shortlist.common import artifacts
from shortlist.common.drift import FILE, POPULARITY, RETRAIN, SCORE, psi
from shortlist.common.stack import free_port
from shortlist.ranking.bundle import RankingModels
from shortlist.ranking.server import create_server
from shortlist.ranking.settings import RankingSettings
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.retrieval.retriever import RetrieveQuery, Retriever
from shortlist.retrieval.service import to_proto
from shortlist.training.drift import reference_users
from shortlist.training.params import FitParams
from shortlist.v1 import common_pb2, ranking_pb2, ranking_pb2_grpc
from tests.conftest import publish_copy
from tests.retrieval.test_drift import drift

WINDOW = 150


@pytest.fixture(scope="module")
def requests(trained) -> list[ranking_pb2.RankRequest]:
    return reference_requests(trained)


def reference_requests(trained: Path) -> list[ranking_pb2.RankRequest]:
    """What the gateway would send ranking for each of the reference's users (k 10)."""
    path = artifacts.resolve(trained)
    models = RetrievalModels.load(path)
    retriever = Retriever(models, path.name, 2000)
    out = []
    for user in reference_users(models, FitParams().seed).tolist():
        got = to_proto(retriever.retrieve(RetrieveQuery(user_id=models.users.id(user), k=10)),
                       retriever, 10)
        out.append(ranking_pb2.RankRequest(user=got.user, candidates=got.candidates,
                                           items=got.items, k=10))
    return out


def serve(root: Path, **settings) -> tuple[grpc.Server, ranking_pb2_grpc.RankingStub, int]:
    metrics_port = free_port()
    server, port = create_server(RankingSettings(
        address="127.0.0.1:0", artifacts=root, metrics_port=metrics_port, **settings))
    stub = ranking_pb2_grpc.RankingStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    return server, stub, metrics_port


@pytest.fixture(scope="module")
def served(trained) -> Iterator[tuple[ranking_pb2_grpc.RankingStub, int]]:
    server, stub, metrics_port = serve(trained, drift_window=WINDOW)
    yield stub, metrics_port
    server.stop(0)


def unpopular_request(models: RankingModels, n: int = 30) -> ranking_pb2.RankRequest:
    """Candidates that are the catalog's least popular items (no generator columns)."""
    items = np.argsort(models.stats.popularity, kind="stable")[:n]
    req = ranking_pb2.RankRequest(k=10)
    req.candidates.item_ids.extend(models.catalog.vocab.ids(items))
    req.candidates.retrieval_scores.extend(np.linspace(1.0, 0.1, n).tolist())
    return req


def test_reference_traffic_reads_near_zero_and_unpopular_items_drift(trained, served,
                                                                     requests):
    stub, metrics_port = served
    models = RankingModels.load(artifacts.resolve(trained))
    for req in requests:
        stub.Rank(req, timeout=10)
    got = drift(metrics_port, "ranking")
    assert got[SCORE][1] == got[POPULARITY][1] == WINDOW * 10
    # the served ranker is compiled (same scores to float precision): an item may cross a
    # decile edge, not more
    assert got[SCORE][0] < 0.01 and got[POPULARITY][0] < 0.01

    # neither another order, another MMR weight nor business rules count
    stub.Rank(ranking_pb2.RankRequest(user=requests[0].user, candidates=requests[0].candidates,
                                      k=10, order="retrieval"), timeout=10)
    boost = common_pb2.Rule(action=common_pb2.Rule.BOOST, category="Comedy", factor=3.0)
    stub.Rank(ranking_pb2.RankRequest(user=requests[0].user, candidates=requests[0].candidates,
                                      k=10, rules=[boost]), timeout=10)
    other = 0.5 if models.config.mmr_lambda != 0.5 else 0.6
    stub.Rank(ranking_pb2.RankRequest(user=requests[0].user, candidates=requests[0].candidates,
                                      k=10, mmr_lambda=other), timeout=10)
    assert drift(metrics_port, "ranking")[SCORE][1] == WINDOW * 10

    unpopular = unpopular_request(models)
    for _ in range(WINDOW):
        stub.Rank(unpopular, timeout=10)
    got = drift(metrics_port, "ranking")
    reference = models.drift.signals[POPULARITY]
    tiers = reference.counts(models.stats.popularity[models.catalog.vocab.indices(
        [i.item_id for i in stub.Rank(unpopular, timeout=10).items])])
    assert tiers[-1] == 0  # none of the head
    assert got[POPULARITY] == (pytest.approx(psi(reference.proportions, tiers)), WINDOW * 10)
    assert got[POPULARITY][0] > RETRAIN


def wait_for_version(stub: ranking_pb2_grpc.RankingStub, req: ranking_pb2.RankRequest,
                     version: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while stub.Rank(req, timeout=10).version != version:
        assert time.monotonic() < deadline, f"{version} never served"
        time.sleep(0.05)


def test_a_new_version_starts_an_empty_window(trained, tmp_path, requests):
    source = artifacts.resolve(trained)
    root = tmp_path / "artifacts"
    first = publish_copy(source, root, "20000101T000000Z-first")
    server, stub, metrics_port = serve(root, reload_interval_s=0.05)
    try:
        wait_for_version(stub, requests[0], first.name)
        for req in requests[:5]:
            stub.Rank(req, timeout=10)
        assert drift(metrics_port, "ranking")[SCORE][1] == 60  # wait_for_version's too
        second = publish_copy(source, root, "20000102T000000Z-second")
        wait_for_version(stub, ranking_pb2.RankRequest(), second.name)
        assert drift(metrics_port, "ranking")[SCORE] == (None, 0)
        stub.Rank(requests[0], timeout=10)
        assert drift(metrics_port, "ranking")[SCORE][1] == 10
    finally:
        server.stop(0)


def test_a_version_without_a_reference_serves_without_drift(trained, tmp_path, requests):
    old = tmp_path / "old"
    shutil.copytree(artifacts.resolve(trained), old)
    for part in ("retrieval", "ranking"):
        (old / part / FILE).unlink()
    root = tmp_path / "artifacts"
    publish_copy(old, root)
    server, stub, metrics_port = serve(root)
    try:
        assert len(stub.Rank(requests[0], timeout=10).items) == 10
        assert drift(metrics_port, "ranking") == {}
    finally:
        server.stop(0)
