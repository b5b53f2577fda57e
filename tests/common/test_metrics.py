"""Prometheus endpoints: every server exposes request counts and stage histograms."""

from __future__ import annotations

import urllib.request

import grpc
from prometheus_client.parser import text_string_to_metric_families

from shortlist.common.metrics import Metrics
from shortlist.common.stack import free_ports
from shortlist.gateway.server import create_server as create_gateway
from shortlist.gateway.settings import GatewaySettings
from shortlist.ranking.server import create_server as create_ranking
from shortlist.ranking.settings import RankingSettings
from shortlist.retrieval.server import create_server as create_retrieval
from shortlist.retrieval.settings import RetrievalSettings
from shortlist.v1 import gateway_pb2, gateway_pb2_grpc


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample on the endpoint, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_metrics_known_counts_and_buckets():
    m = Metrics("unit")
    port = m.serve("127.0.0.1", 0)
    try:
        for ms in (0.2, 3.0, 3.0, 40.0):
            m.stages({"model": ms})
        m.request("Rank", "OK", 5.0)
        m.request("Rank", "INVALID_ARGUMENT", 0.1)
        got = scrape(port)
    finally:
        m.close()
    stage = (("server", "unit"), ("stage", "model"))
    assert got[("shortlist_stage_seconds_count", stage)] == 4
    assert abs(got[("shortlist_stage_seconds_sum", stage)] - 0.0462) < 1e-9
    assert got[("shortlist_stage_seconds_bucket", (("le", "0.003"), *stage))] == 3
    assert got[("shortlist_requests_total", (("code", "OK"), ("rpc", "Rank"),
                                             ("server", "unit")))] == 1
    assert got[("shortlist_requests_total", (("code", "INVALID_ARGUMENT"), ("rpc", "Rank"),
                                             ("server", "unit")))] == 1


def test_each_server_reports_its_stages(trained):
    ports = dict(zip(("retrieval", "ranking", "gateway"), free_ports(3), strict=True))
    retrieval, rport = create_retrieval(RetrievalSettings(
        address="127.0.0.1:0", artifacts=trained, metrics_port=ports["retrieval"]))
    ranking, kport = create_ranking(RankingSettings(
        address="127.0.0.1:0", artifacts=trained, metrics_port=ports["ranking"]))
    gateway, gport = create_gateway(GatewaySettings(
        address="127.0.0.1:0", retrieval_target=f"127.0.0.1:{rport}",
        ranking_target=f"127.0.0.1:{kport}", metrics_port=ports["gateway"]))
    channel = grpc.insecure_channel(f"127.0.0.1:{gport}")
    try:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        for user in ("u1", "u2", "someone-new"):
            stub.Recommend(gateway_pb2.RecommendRequest(user_id=user, k=5), timeout=10)
        try:
            stub.Recommend(gateway_pb2.RecommendRequest(user_id="", k=5), timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        expected = {"gateway": {"total", "retrieval", "ranking", "gateway"},
                    "retrieval": {"total", "merge", "trending"},
                    "ranking": {"total", "features", "model"}}
        for server, stages in expected.items():
            got = scrape(ports[server])
            for stage in stages:
                key = ("shortlist_stage_seconds_count", (("server", server), ("stage", stage)))
                assert got.get(key) == 3, (server, stage)
        # after the model, diversity; or the merged order where the ranker tied every
        # candidate (the newcomer's, all from cold-start generators, may be such a request)
        got = scrape(ports["ranking"])
        assert sum(got.get(("shortlist_stage_seconds_count",
                            (("server", "ranking"), ("stage", stage))), 0)
                   for stage in ("mmr", "order")) == 3
        got = scrape(ports["gateway"])
        assert got[("shortlist_requests_total", (("code", "OK"), ("rpc", "Recommend"),
                                                 ("server", "gateway")))] == 3
        assert got[("shortlist_requests_total", (("code", "INVALID_ARGUMENT"),
                                                 ("rpc", "Recommend"), ("server", "gateway")))] == 1
    finally:
        channel.close()
        for server in (gateway, ranking, retrieval):
            server.stop(0)
