"""Gateway behaviour against real retrieval and ranking servers: the session's shared stack's
(tests/conftest.py; only read here), behind a gateway built in this process per test."""

from __future__ import annotations

import time
from concurrent import futures

import grpc
import pytest

from shortlist.common.stack import free_port
from shortlist.gateway.server import create_server as create_gateway
from shortlist.gateway.settings import GatewaySettings
from shortlist.retrieval.eventlog import EventLog
from shortlist.retrieval.server import create_server as create_retrieval
from shortlist.retrieval.settings import RetrievalSettings
from shortlist.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
    retrieval_pb2,
)


@pytest.fixture(scope="module")
def backends(stack) -> tuple[str, str]:
    return stack.address("retrieval"), stack.address("ranking")


def gateway(backends, **overrides):
    rtarget, ktarget = backends
    settings = GatewaySettings(address="127.0.0.1:0", retrieval_target=rtarget,
                               ranking_target=ktarget, **overrides)
    server, port = create_gateway(settings)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return server, channel, gateway_pb2_grpc.GatewayStub(channel)


def test_ranked_response_has_stage_timings_and_provenance(backends):
    server, channel, stub = gateway(backends)
    try:
        resp = stub.Recommend(gateway_pb2.RecommendRequest(user_id="u5", k=7, debug=True),
                              timeout=5)
        assert len(resp.items) == 7 and not resp.degraded
        assert [i.ranking_rank for i in resp.items] == list(range(1, 8))
        assert all(i.retrieval_rank >= 1 and i.sources for i in resp.items)
        assert all(s.score != 0 for i in resp.items for s in i.sources)
        assert {"total", "gateway", "retrieval", "ranking", "retrieval.merge",
                "ranking.features", "ranking.model", "ranking.mmr"} <= set(resp.timings_ms)
        assert resp.request_id
    finally:
        channel.close()
        server.stop(0)


class SlowRanking(ranking_pb2_grpc.RankingServicer):
    """A ranking server that answers too late: the one thing a real one will not do on cue."""

    def Rank(self, request, context):
        time.sleep(1.0)
        return ranking_pb2.RankResponse()


def test_ranking_deadline_miss_serves_retrieval_order(backends):
    slow = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    ranking_pb2_grpc.add_RankingServicer_to_server(SlowRanking(), slow)
    port = slow.add_insecure_port("127.0.0.1:0")
    slow.start()
    server, channel, stub = gateway((backends[0], f"127.0.0.1:{port}"), ranking_timeout_s=0.1)
    try:
        start = time.monotonic()
        resp = stub.Recommend(gateway_pb2.RecommendRequest(user_id="u5", k=10), timeout=5)
        assert time.monotonic() - start < 0.9
        assert resp.degraded and len(resp.items) == 10
        assert [i.retrieval_rank for i in resp.items] == list(range(1, 11))
    finally:
        channel.close()
        server.stop(0)
        slow.stop(0)


def test_ranking_unreachable_is_degraded_not_an_error(backends):
    rtarget, _ = backends
    server, channel, stub = gateway((rtarget, f"127.0.0.1:{free_port()}"))
    try:
        resp = stub.Recommend(gateway_pb2.RecommendRequest(user_id="u5", k=10), timeout=5)
        assert resp.degraded and len(resp.items) == 10
    finally:
        channel.close()
        server.stop(0)


def test_retrieval_unreachable_is_unavailable(backends):
    _, ktarget = backends
    server, channel, stub = gateway((f"127.0.0.1:{free_port()}", ktarget))
    try:
        with pytest.raises(grpc.RpcError) as err:
            stub.Recommend(gateway_pb2.RecommendRequest(user_id="u5", k=10), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "retrieval" in err.value.details()
    finally:
        channel.close()
        server.stop(0)


def test_k_larger_than_candidates_returns_what_exists(backends):
    server, channel, stub = gateway(backends)
    try:
        resp = stub.Recommend(gateway_pb2.RecommendRequest(
            user_id="u5", k=100, filters=common_pb2.Filters(include_categories=["Drama"])),
            timeout=5)
        assert 0 < len(resp.items) <= 40  # the synthetic catalog has 40 Drama items
        assert len({i.item_id for i in resp.items}) == len(resp.items)
    finally:
        channel.close()
        server.stop(0)


def test_an_event_type_passes_through_and_an_unknown_one_is_invalid_argument(backends,
                                                                             trained,
                                                                             tmp_path):
    """Writes go to a retrieval server of this test's own (the session's stack is only read),
    so what the gateway forwarded can be read back from its event log."""
    log_path = tmp_path / "events.db"
    retrieval, rport = create_retrieval(RetrievalSettings(
        address="127.0.0.1:0", artifacts=trained, event_log=log_path))
    server, channel, stub = gateway((f"127.0.0.1:{rport}", backends[1]))
    try:
        resp = stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
            user_id="gw-typed", item_id="i4", event="PURCHASE"), timeout=5)
        assert resp.sequence > 0 and resp.history_length == 1
        with pytest.raises(grpc.RpcError) as err:
            stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
                user_id="gw-typed", item_id="i5", event="teleport"), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "unknown event type 'teleport'; this model knows:" in err.value.details()
        assert "dislike" in err.value.details()
        with EventLog(log_path) as log:
            assert [(r.item_id, r.event) for r in log.interactions()] == [("i4", "purchase")]
    finally:
        channel.close()
        server.stop(0)
        retrieval.stop(0)
