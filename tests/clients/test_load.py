"""The open-loop driver: one record per due request, the in-flight bound, latency from due time.

A real gRPC server in this process answers a RankResponse carrying timings_ms (what the
driver reads from any response). No test asserts how fast anything is: the only time figures
checked are lower bounds that hold by construction (a sender that sleeps is late by at least
its sleeps) and the order of two clocks on one request.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent import futures

import grpc
import pytest

from shortlist.clients import load
from shortlist.common.stack import free_port
from shortlist.v1 import ranking_pb2

METHOD = "/test.Load/Call"


@pytest.fixture
def server():
    """A server whose handler answers at once unless ``hold`` is set, then waits for
    ``release`` (never set in a test: the call runs into its deadline)."""
    hold, release = threading.Event(), threading.Event()
    seen: list[bytes] = []

    def call(request: bytes, context: grpc.ServicerContext) -> bytes:
        seen.append(request)
        if hold.is_set():
            release.wait(30)
        return ranking_pb2.RankResponse(version="v", timings_ms={"total": 0.5}).SerializeToString()

    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    srv.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "test.Load", {"Call": grpc.unary_unary_rpc_method_handler(call)})])
    port = srv.add_insecure_port(f"127.0.0.1:{free_port()}")
    srv.start()
    try:
        yield f"127.0.0.1:{port}", hold, seen
    finally:
        release.set()
        srv.stop(0).wait()


def method(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable:
    return channel.unary_unary(METHOD, request_serializer=None,
                               response_deserializer=ranking_pb2.RankResponse.FromString)


def test_every_due_request_has_one_record_with_the_responses_timings(server):
    target, _hold, seen = server
    with load.channels(target, count=2) as chans:
        result = load.open_loop([method(c) for c in chans], [b"a", b"b", b"c"], rate=200.0,
                                count=12, observe=lambda r: r.version)
    assert result.offered == 12 and result.ok == 12
    assert [r.index for r in result.records] == list(range(12))
    assert [r.due_s for r in result.records] == pytest.approx([i / 200.0 for i in range(12)])
    for r in result.records:
        assert r.status == "OK" and r.timings_ms == {"total": 0.5} and r.observed == "v"
        # measured from the due time: the answer cannot come before the request left
        assert r.latency_ms >= r.send_lag_ms >= 0
    assert Counter(seen) == {b"a": 4, b"b": 4, b"c": 4}  # the sequence, used in turn
    assert result.last_answer_s() > result.records[-1].due_s


def test_past_the_bound_requests_are_refused_at_once_not_delayed(server):
    target, hold, seen = server
    hold.set()  # the first two calls never answer: both slots stay taken
    with load.channels(target) as (chan,):
        result = load.open_loop(method(chan), lambda i: str(i).encode(), rate=1000.0, count=10,
                                timeout_s=2.0, max_in_flight=2)
    assert [r.status for r in result.records] == (["DEADLINE_EXCEEDED"] * 2
                                                  + [load.CLIENT_SATURATED] * 8)
    assert sorted(seen) == [b"0", b"1"]  # refused requests were never built nor sent
    assert result.codes() == {"DEADLINE_EXCEEDED": 2, load.CLIENT_SATURATED: 8}


def test_a_late_sender_is_charged_to_the_latency(server):
    """Every request is built 10 ms after the previous one (a starved sender) while one is
    due every millisecond: request i leaves at least 9*i ms late, and its latency, counted
    from its due time, holds that delay even though the server answers at once."""
    target, _hold, _seen = server

    def slow(i: int) -> bytes:
        time.sleep(0.010)
        return b"x"

    with load.channels(target) as (chan,):
        result = load.open_loop(method(chan), slow, rate=1000.0, count=6)
    for r in result.records:
        assert r.status == "OK"
        assert r.send_lag_ms >= 9.0 * r.index
        assert r.latency_ms >= r.send_lag_ms
    assert result.max_send_lag_ms == result.records[-1].send_lag_ms


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="rate"):
        load.open_loop([lambda *a, **k: None], [b""], rate=0.0, count=1)
    with pytest.raises(ValueError, match="max_in_flight"):
        load.open_loop([lambda *a, **k: None], [b""], rate=1.0, count=1, max_in_flight=0)
    with pytest.raises(ValueError, match="duration_s or count"):
        load.open_loop([lambda *a, **k: None], [b""], rate=1.0)
