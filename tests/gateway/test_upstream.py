"""The gateway's upstream channels retry idempotent calls on UNAVAILABLE, and only those.

Fake retrieval and ranking servers (real gRPC, free ports) fail the first attempt of every
call with UNAVAILABLE, then succeed: a retried call succeeds after two attempts, a write fails
after one, since a write that timed out may have been applied and must not be applied twice.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from shortlist.gateway.upstream import Upstream
from shortlist.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
)


class FlakyOnce:
    """Counts attempts per method; the first attempt of each fails UNAVAILABLE."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def attempt(self, method: str, context, response):
        with self._lock:
            self.attempts[method] += 1
            first = self.attempts[method] == 1
        if first:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{method}: briefly down")
        return response


class FlakyRetrieval(retrieval_pb2_grpc.RetrievalServicer, admin_pb2_grpc.AdminServicer):
    def __init__(self, flaky: FlakyOnce) -> None:
        self.flaky = flaky

    def Retrieve(self, request, context):
        return self.flaky.attempt("Retrieve", context, retrieval_pb2.RetrieveResponse())

    def SimilarItems(self, request, context):
        return self.flaky.attempt("SimilarItems", context, retrieval_pb2.SimilarItemsResponse())

    def SearchItems(self, request, context):
        return self.flaky.attempt("SearchItems", context, retrieval_pb2.SearchItemsResponse())

    def RecordInteraction(self, request, context):
        return self.flaky.attempt("RecordInteraction", context,
                                  retrieval_pb2.RecordInteractionResponse())

    def UpsertItem(self, request, context):
        return self.flaky.attempt("UpsertItem", context, retrieval_pb2.UpsertItemResponse())

    def ListVersions(self, request, context):
        return self.flaky.attempt("ListVersions", context, admin_pb2.ListVersionsResponse())

    def SetVersion(self, request, context):
        return self.flaky.attempt("SetVersion", context, admin_pb2.SetVersionResponse())


class FlakyRanking(ranking_pb2_grpc.RankingServicer):
    def __init__(self, flaky: FlakyOnce) -> None:
        self.flaky = flaky

    def Rank(self, request, context):
        return self.flaky.attempt("Rank", context, ranking_pb2.RankResponse())


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, FlakyOnce]]:
    flaky = FlakyOnce()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    retrieval = FlakyRetrieval(flaky)
    retrieval_pb2_grpc.add_RetrievalServicer_to_server(retrieval, server)
    admin_pb2_grpc.add_AdminServicer_to_server(retrieval, server)
    ranking_pb2_grpc.add_RankingServicer_to_server(FlakyRanking(flaky), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    target = f"127.0.0.1:{port}"  # one server plays both upstreams
    up = Upstream(target, target, 4 * 1024 * 1024)
    try:
        yield up, flaky
    finally:
        up.close()
        server.stop(0)


READS = [
    ("retrieval", "Retrieve", retrieval_pb2.RetrieveRequest(user_id="u1")),
    ("retrieval", "SimilarItems", retrieval_pb2.SimilarItemsRequest(item_id="i1")),
    ("retrieval", "SearchItems", retrieval_pb2.SearchItemsRequest(query="robot")),
    ("ranking", "Rank", ranking_pb2.RankRequest()),
    ("retrieval_admin", "ListVersions", admin_pb2.ListVersionsRequest()),
]
WRITES = [
    ("retrieval", "RecordInteraction",
     retrieval_pb2.RecordInteractionRequest(user_id="u1", item_id="i1")),
    ("retrieval", "UpsertItem", retrieval_pb2.UpsertItemRequest(item_id="i1", title="T")),
    ("retrieval_admin", "SetVersion", admin_pb2.SetVersionRequest(version="v1")),
    ("ranking_admin", "SetVersion", admin_pb2.SetVersionRequest(version="v1")),
]


@pytest.mark.parametrize(("stub", "method", "request_"), READS, ids=[r[1] for r in READS])
def test_an_idempotent_call_is_retried_once_unavailable(upstream, stub, method, request_):
    up, flaky = upstream
    getattr(getattr(up, stub), method)(request_, timeout=5)
    assert flaky.attempts[method] == 2


@pytest.mark.parametrize(("stub", "method", "request_"), WRITES,
                         ids=[f"{r[0]}.{r[1]}" for r in WRITES])
def test_a_write_is_never_retried(upstream, stub, method, request_):
    up, flaky = upstream
    with pytest.raises(grpc.RpcError) as err:
        getattr(getattr(up, stub), method)(request_, timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert flaky.attempts[method] == 1
