"""The gRPC edge, on a real server on a free port with a fake ``shortlist.v1`` servicer.

Whatever the handler does (answer, raise a typed error, crash, abort by itself), the caller
gets a deliberate status, the request gets exactly one log line with its id and fields, and the
server's metrics count it; health checks and services outside ``shortlist.v1`` are untouched.
Last, on the three real servers: one request id follows a request from the gateway upstream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shortlist.common import edge, errors, serving
from shortlist.common.logs import JsonFormatter
from shortlist.common.metrics import Metrics
from shortlist.common.security import BearerTokenInterceptor
from shortlist.gateway.errors import UpstreamFailed
from shortlist.gateway.server import create_server as create_gateway
from shortlist.gateway.settings import GatewaySettings
from shortlist.ranking.server import create_server as create_ranking
from shortlist.ranking.settings import RankingSettings
from shortlist.retrieval.errors import InvalidRequest
from shortlist.retrieval.server import create_server as create_retrieval
from shortlist.retrieval.settings import RetrievalSettings
from shortlist.v1 import gateway_pb2, gateway_pb2_grpc, retrieval_pb2

SERVICE = "shortlist.v1.Fake"
OTHER = "other.v1.Fake"  # a service the edge must leave alone
TOKEN = "edge-test-token"
C = grpc.StatusCode


# -- the fake servicer ----------------------------------------------------------------------

def answer(request, context):
    """Echo the request id the service sees; annotate the log line; report stage timings,
    one of them an upstream's (dotted) as the gateway does in debug mode."""
    edge.annotate(item_id=request.item_id, k=request.k)
    response = gateway_pb2.RecommendResponse(request_id=edge.request_id())
    response.timings_ms["total"] = 2.0
    response.timings_ms["retrieval.merge"] = 1.0
    return response


def raise_(exc: Exception) -> Callable:
    def handler(request, context):
        edge.annotate(item_id=request.item_id)
        raise exc
    return handler


def abort_itself(request, context):
    context.abort(C.PERMISSION_DENIED, "not you")


def set_code_itself(request, context):
    context.set_code(C.ALREADY_EXISTS)
    context.set_details("exists")
    return gateway_pb2.RecommendResponse()


def crash(request, context):
    raise KeyError("secret-internal-detail")


HANDLERS: dict[str, Callable] = {
    "Answer": answer,
    "NotFound": raise_(errors.NotFound("no such item")),
    "Invalid": raise_(InvalidRequest("k must be in [1, 10], got 11")),
    "Upstream": raise_(UpstreamFailed("UNAVAILABLE", "retrieval unavailable (UNAVAILABLE): x")),
    "BadStatus": raise_(type("Odd", (errors.ServiceError,), {"status": "NOPE"})("odd")),
    "Crash": crash,
    "Abort": abort_itself,
    "SetCode": set_code_itself,
    "Write": answer,
}


def generic(service: str) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(service, {
        name: grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=retrieval_pb2.SimilarItemsRequest.FromString,
            response_serializer=gateway_pb2.RecommendResponse.SerializeToString)
        for name, fn in HANDLERS.items()})


@dataclass
class Served:
    channel: grpc.Channel
    metrics: Metrics

    def call(self, method: str, service: str = SERVICE, metadata=None,
             **fields) -> gateway_pb2.RecommendResponse:
        stub = self.channel.unary_unary(
            f"/{service}/{method}",
            request_serializer=retrieval_pb2.SimilarItemsRequest.SerializeToString,
            response_deserializer=gateway_pb2.RecommendResponse.FromString)
        return stub(retrieval_pb2.SimilarItemsRequest(**fields), timeout=5, metadata=metadata)

    def fails(self, method: str, **fields) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as err:
            self.call(method, **fields)
        return err.value

    def requests(self, rpc: str, code: str) -> float:
        return self.metrics.registry.get_sample_value(
            "shortlist_requests_total",
            {"server": self.metrics.server, "rpc": rpc, "code": code}) or 0.0

    def stage_count(self, stage: str) -> float:
        return self.metrics.registry.get_sample_value(
            "shortlist_stage_seconds_count",
            {"server": self.metrics.server, "stage": stage}) or 0.0


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """One worker thread, so consecutive calls run on the same thread (state must not leak),
    and the token check in front of the edge, as every server.py wires them."""
    metrics = Metrics("fake")
    server = serving.new_server(1, interceptors=[
        BearerTokenInterceptor(TOKEN, protected=[f"/{SERVICE}/Write"]), edge.Edge(metrics)])
    server.add_generic_rpc_handlers((generic(SERVICE), generic(OTHER)))
    health = serving.add_health_and_reflection(server, [SERVICE])
    port = serving.bind(server, "127.0.0.1:0")
    server.start()
    serving.set_serving(health, [SERVICE])
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield Served(channel, metrics)
    channel.close()
    server.stop(0)


@pytest.fixture
def lines(caplog) -> Callable[[], list[dict]]:
    """The edge's ``request`` log lines so far, as the JSON the servers write."""
    caplog.set_level(logging.INFO, logger=edge.__name__)
    fmt = JsonFormatter()

    def read() -> list[dict]:
        return [json.loads(fmt.format(r)) for r in caplog.records
                if r.name == edge.__name__ and r.getMessage() == "request"]
    return read


# -- request ids ----------------------------------------------------------------------------

def test_a_callers_request_id_is_used_and_seen_by_the_service(served, lines):
    resp = served.call("Answer", item_id="i1", request_id="caller-id-1")
    assert resp.request_id == "caller-id-1"
    [line] = lines()
    assert line["request_id"] == "caller-id-1"


def test_without_one_an_id_is_generated_per_request(served, lines):
    first = served.call("Answer", item_id="i1").request_id
    second = served.call("Answer", item_id="i1").request_id
    assert len(first) == 16 and int(first, 16) >= 0 and first != second
    assert [line["request_id"] for line in lines()] == [first, second]


def test_a_huge_request_id_is_cut(served, lines):
    resp = served.call("Answer", item_id="i1", request_id="r" * 10_000)
    assert resp.request_id == "r" * edge.MAX_REQUEST_ID
    assert lines()[0]["request_id"] == "r" * edge.MAX_REQUEST_ID


def test_outside_a_call_there_is_no_request():
    assert edge.request_id() == ""
    edge.annotate(anything=1)  # a no-op, not an error


# -- one log line ---------------------------------------------------------------------------

def test_one_line_per_request_with_the_annotated_fields(served, lines):
    served.call("Answer", item_id="i7", k=3, request_id="rid-ok")
    [line] = lines()
    assert line["msg"] == "request" and line["level"] == "info"
    assert line["rpc"] == "Answer" and line["server"] == "fake"
    assert line["code"] == "OK" and line["item_id"] == "i7" and line["k"] == 3
    assert isinstance(line["ms"], float) and line["ms"] >= 0
    assert "error" not in line


def test_annotations_do_not_leak_into_the_next_request(served, lines):
    served.call("Answer", item_id="i7", k=3)
    served.fails("Crash")  # same worker thread, annotates nothing
    first, second = lines()
    assert first["item_id"] == "i7"
    assert "item_id" not in second and "k" not in second


# -- status mapping -------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "code", "message"), [
    ("NotFound", C.NOT_FOUND, "no such item"),
    ("Invalid", C.INVALID_ARGUMENT, "k must be in [1, 10], got 11"),
    ("Upstream", C.UNAVAILABLE, "retrieval unavailable (UNAVAILABLE): x"),
])
def test_a_typed_error_becomes_its_status(served, lines, method, code, message):
    err = served.fails(method, item_id="i9", request_id=f"rid-{method}")
    assert err.code() == code and err.details() == message
    [line] = lines()
    assert line["code"] == code.name and line["error"] == message
    assert line["item_id"] == "i9" and line["request_id"] == f"rid-{method}"
    assert "exc" not in line  # an expected failure: no traceback in the log either


def test_an_error_naming_no_status_is_internal(served):
    assert served.fails("BadStatus").code() == C.INTERNAL


def test_an_unexpected_exception_is_internal_without_a_traceback(served, lines):
    err = served.fails("Crash", request_id="rid-crash")
    assert err.code() == C.INTERNAL
    assert "rid-crash" in err.details()
    assert "secret-internal-detail" not in err.details()
    assert "Traceback" not in err.details() and "KeyError" not in err.details()
    [line] = lines()
    assert line["level"] == "error" and line["code"] == "INTERNAL"
    assert "secret-internal-detail" in line["error"]
    assert "Traceback" in line["exc"] and "crash" in line["exc"]


def test_a_handler_that_aborts_itself_keeps_its_status(served, lines):
    err = served.fails("Abort")
    assert err.code() == C.PERMISSION_DENIED and err.details() == "not you"
    [line] = lines()
    assert line["code"] == "PERMISSION_DENIED" and line["error"] == "not you"


def test_a_handler_that_sets_its_code_keeps_it(served, lines):
    err = served.fails("SetCode")
    assert err.code() == C.ALREADY_EXISTS and err.details() == "exists"
    assert lines()[0]["code"] == "ALREADY_EXISTS"


def test_status_of_reads_the_status_name():
    assert edge.status_of(errors.Unavailable("x")) == C.UNAVAILABLE
    assert edge.status_of(UpstreamFailed("NOT_FOUND", "x")) == C.NOT_FOUND
    assert edge.status_of(errors.ServiceError("x")) == C.UNKNOWN
    assert edge.status_of(UpstreamFailed("OK", "x")) == C.INTERNAL  # a failure is never OK


# -- metrics --------------------------------------------------------------------------------

def test_requests_are_counted_by_rpc_and_code(served):
    ok, missing = served.requests("Answer", "OK"), served.requests("NotFound", "NOT_FOUND")
    crashed = served.requests("Crash", "INTERNAL")
    served.call("Answer", item_id="i1")
    served.fails("NotFound")
    served.fails("Crash")
    assert served.requests("Answer", "OK") == ok + 1
    assert served.requests("NotFound", "NOT_FOUND") == missing + 1
    assert served.requests("Crash", "INTERNAL") == crashed + 1


def test_own_stages_are_recorded_not_an_upstreams(served):
    total = served.stage_count("total")
    served.call("Answer", item_id="i1")
    served.fails("NotFound")  # no response, no stages
    assert served.stage_count("total") == total + 1
    assert served.stage_count("retrieval.merge") == 0


# -- what the edge leaves alone -------------------------------------------------------------

def test_health_and_other_services_are_not_requests(served, lines):
    status = health_pb2_grpc.HealthStub(served.channel).Check(
        health_pb2.HealthCheckRequest(service=SERVICE), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    resp = served.call("Answer", service=OTHER, item_id="i1", request_id="other")
    assert resp.request_id == ""  # the edge did not run: no request in scope
    assert lines() == []
    assert served.requests("Check", "OK") == 0


def test_the_token_check_runs_before_the_edge(served, lines):
    before = served.requests("Write", "UNAUTHENTICATED")
    with pytest.raises(grpc.RpcError) as err:
        served.call("Write", item_id="i1")
    assert err.value.code() == C.UNAUTHENTICATED
    assert lines() == [] and served.requests("Write", "UNAUTHENTICATED") == before
    resp = served.call("Write", item_id="i1", request_id="w1",
                       metadata=[("authorization", f"Bearer {TOKEN}")])
    assert resp.request_id == "w1" and [line["rpc"] for line in lines()] == ["Write"]


# -- across the three real servers ----------------------------------------------------------

@pytest.fixture(scope="module")
def three_servers(trained, tmp_path_factory) -> Iterator[grpc.Channel]:
    tmp = tmp_path_factory.mktemp("edge-ids")
    retrieval, rport = create_retrieval(RetrievalSettings(
        address="127.0.0.1:0", artifacts=trained, event_log=tmp / "events.db"))
    ranking, kport = create_ranking(RankingSettings(address="127.0.0.1:0", artifacts=trained))
    gateway, gport = create_gateway(GatewaySettings(
        address="127.0.0.1:0", retrieval_target=f"127.0.0.1:{rport}",
        ranking_target=f"127.0.0.1:{kport}", request_timeout_s=5.0, retrieval_timeout_s=5.0,
        ranking_timeout_s=5.0))
    channel = grpc.insecure_channel(f"127.0.0.1:{gport}")
    yield channel
    channel.close()
    for server in (gateway, ranking, retrieval):
        server.stop(0)


def test_one_request_id_follows_a_recommendation_through_every_server(three_servers, lines):
    stub = gateway_pb2_grpc.GatewayStub(three_servers)
    resp = stub.Recommend(gateway_pb2.RecommendRequest(user_id="u5", k=5), timeout=10)
    assert resp.request_id and not resp.degraded
    seen = {(line["server"], line["rpc"]) for line in lines()
            if line["request_id"] == resp.request_id}
    assert seen == {("gateway", "Recommend"), ("retrieval", "Retrieve"), ("ranking", "Rank")}
    [gateway] = [line for line in lines() if line["server"] == "gateway"]
    assert (gateway["user_id"], gateway["k"], gateway["returned"]) == ("u5", 5, 5)
    assert gateway["degraded"] is False and gateway["version"] == resp.version


def test_a_callers_request_id_is_forwarded_upstream(three_servers, lines):
    stub = gateway_pb2_grpc.GatewayStub(three_servers)
    stub.SimilarItems(retrieval_pb2.SimilarItemsRequest(item_id="i3", k=3,
                                                        request_id="caller-sim"), timeout=10)
    assert {(line["server"], line["rpc"]) for line in lines()
            if line["request_id"] == "caller-sim"} == {("gateway", "SimilarItems"),
                                                       ("retrieval", "SimilarItems")}
    with pytest.raises(grpc.RpcError) as err:
        stub.SimilarItems(retrieval_pb2.SimilarItemsRequest(item_id="nope",
                                                            request_id="caller-404"), timeout=10)
    assert err.value.code() == C.NOT_FOUND  # retrieval's status, passed through as is
    assert {(line["server"], line["code"]) for line in lines()
            if line["request_id"] == "caller-404"} == {("gateway", "NOT_FOUND"),
                                                       ("retrieval", "NOT_FOUND")}
