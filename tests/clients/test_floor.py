"""The floor stack: Shortlist's shape with the real payload sizes and no work.

What is checked is what makes the floor a fair baseline: its answers weigh what Shortlist's
do (within 10 %), its servers answer the same whatever they are asked (no work to vary), its
gateway makes exactly Shortlist's two calls and passes the candidates on untouched, and it
imports nothing a harness could not ship. Nothing here is timed.
"""

from __future__ import annotations

import ast
import sys
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from shortlist.clients import floor
from shortlist.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
)


def within_10_percent(size: int, target: int) -> bool:
    return abs(size - target) <= 0.1 * target


@pytest.fixture
def floor_servers():
    """The three floor servers in this process, the gateway wired to the other two."""
    retrieval = floor.create_server("retrieval")
    ranking = floor.create_server("ranking")
    gateway = floor.create_server("gateway", retrieval=retrieval.address,
                                  ranking=ranking.address)
    try:
        yield {"retrieval": retrieval, "ranking": ranking, "gateway": gateway}
    finally:
        for server in (gateway, ranking, retrieval):
            server.stop()


def test_answers_weigh_what_shortlist_answers_weigh(floor_servers):
    with grpc.insecure_channel(floor_servers["retrieval"].address) as channel:
        retrieved = retrieval_pb2_grpc.RetrievalStub(channel).Retrieve(
            retrieval_pb2.RetrieveRequest(user_id="1", k=10), timeout=10)
    with grpc.insecure_channel(floor_servers["ranking"].address) as channel:
        ranked = ranking_pb2_grpc.RankingStub(channel).Rank(
            ranking_pb2.RankRequest(candidates=retrieved.candidates, k=10), timeout=10)
    assert within_10_percent(retrieved.ByteSize(), floor.RETRIEVE_RESPONSE_BYTES)
    assert within_10_percent(ranked.ByteSize(), floor.RANK_RESPONSE_BYTES)
    # the real shape: 300 candidates, every block row-major candidates x generators
    cols = retrieved.candidates
    cells = floor.CANDIDATES * len(cols.generators)
    assert len(cols.item_ids) == len(set(cols.item_ids)) == floor.CANDIDATES
    assert len(cols.retrieval_scores) == floor.CANDIDATES
    assert len(cols.generator_scores) == len(cols.generator_ranks) == cells
    assert len(cols.generator_affinities) == cells
    assert [it.item_id for it in retrieved.items] == list(cols.item_ids[:floor.K])
    assert len(ranked.items) == floor.K
    assert [r.rank for r in ranked.items] == list(range(1, floor.K + 1))


def test_servers_answer_the_same_whatever_they_are_asked(floor_servers):
    with grpc.insecure_channel(floor_servers["retrieval"].address) as channel:
        stub = retrieval_pb2_grpc.RetrievalStub(channel)
        answers = {stub.Retrieve(req, timeout=10).SerializeToString() for req in (
            retrieval_pb2.RetrieveRequest(user_id="1"),
            retrieval_pb2.RetrieveRequest(user_id="someone-else", k=3, max_candidates=5,
                                          filters=common_pb2.Filters(exclude_item_ids=["x"])))}
    assert len(answers) == 1
    with grpc.insecure_channel(floor_servers["ranking"].address) as channel:
        stub = ranking_pb2_grpc.RankingStub(channel)
        answers = {stub.Rank(req, timeout=10).SerializeToString() for req in (
            ranking_pb2.RankRequest(k=10), ranking_pb2.RankRequest(k=2, version="v9"))}
    assert len(answers) == 1
    with grpc.insecure_channel(floor_servers["gateway"].address) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        got = [stub.Recommend(gateway_pb2.RecommendRequest(user_id=u, k=10, debug=True),
                              timeout=10) for u in ("1", "new-user")]
    assert got[0] == got[1]
    # ranking's items, in ranking's order; nothing timed, nothing degraded
    expected = floor.rank_response()
    assert [i.item_id for i in got[0].items] == [r.item_id for r in expected.items]
    assert [i.ranking_rank for i in got[0].items] == [r.rank for r in expected.items]
    assert not got[0].timings_ms and not got[0].degraded


class RecordingRetrieval(floor.FloorRetrieval):
    def __init__(self) -> None:
        super().__init__(floor.retrieve_response())
        self.requests: list[retrieval_pb2.RetrieveRequest] = []

    def Retrieve(self, request, context):
        self.requests.append(request)
        return super().Retrieve(request, context)


class RecordingRanking(floor.FloorRanking):
    def __init__(self) -> None:
        super().__init__(floor.rank_response())
        self.requests: list[ranking_pb2.RankRequest] = []

    def Rank(self, request, context):
        self.requests.append(request)
        return super().Rank(request, context)


def test_gateway_makes_shortlists_two_calls_and_passes_candidates_on():
    retrieval, ranking = RecordingRetrieval(), RecordingRanking()
    servers = []
    for add, servicer in ((retrieval_pb2_grpc.add_RetrievalServicer_to_server, retrieval),
                          (ranking_pb2_grpc.add_RankingServicer_to_server, ranking)):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        add(servicer, server)
        servers.append((server, server.add_insecure_port("127.0.0.1:0")))
        server.start()
    gateway = floor.create_server("gateway", retrieval=f"127.0.0.1:{servers[0][1]}",
                                  ranking=f"127.0.0.1:{servers[1][1]}")
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            stub = gateway_pb2_grpc.GatewayStub(channel)
            stub.Recommend(gateway_pb2.RecommendRequest(
                user_id="u7", k=10, recent_item_ids=["i1"],
                filters=common_pb2.Filters(exclude_item_ids=["i2"])), timeout=10)
    finally:
        gateway.stop()
        for server, _port in servers:
            server.stop(0).wait()
    assert len(retrieval.requests) == 1 and len(ranking.requests) == 1
    asked = retrieval.requests[0]
    assert (asked.user_id, list(asked.recent_item_ids), asked.k) == ("u7", ["i1"], 10)
    assert list(asked.filters.exclude_item_ids) == ["i2"]
    sent = floor.retrieve_response()
    rank = ranking.requests[0]
    assert rank.candidates == sent.candidates and rank.user == sent.user
    assert list(rank.items) == list(sent.items) and rank.k == 10
    assert rank.version == sent.version


def test_gateway_needs_its_upstreams():
    with pytest.raises(ValueError):
        floor.create_server("gateway")
    with pytest.raises(ValueError):
        floor.create_server("cache")


def test_stack_runs_three_processes_and_stops_them():
    with floor.FloorStack() as stack:
        procs = dict(stack.procs)
        pids = stack.pids()
        assert set(pids) == set(floor.ROLES)
        assert len(set(pids.values())) == 3 and all(p > 0 for p in pids.values())
        with grpc.insecure_channel(stack.address("gateway")) as channel:
            answer = gateway_pb2_grpc.GatewayStub(channel).Recommend(
                gateway_pb2.RecommendRequest(user_id="1", k=10), timeout=10)
        assert len(answer.items) == floor.K
        sizes = stack.payload_bytes()
        assert within_10_percent(sizes["retrieve_response"], floor.RETRIEVE_RESPONSE_BYTES)
        assert within_10_percent(sizes["rank_response"], floor.RANK_RESPONSE_BYTES)
    assert all(proc.poll() is not None for proc in procs.values())
    assert stack.procs == {} and stack.ports == {}


def test_imports_only_the_contract_grpc_and_the_standard_library():
    tree = ast.parse(Path(floor.__file__).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module)
    outside = {name for name in found
               if name.split(".")[0] not in sys.stdlib_module_names
               and name != "grpc" and not name.startswith("shortlist.v1")}
    assert outside == set()
