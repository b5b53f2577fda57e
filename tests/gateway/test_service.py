"""Gateway behaviour against real retrieval and ranking servers: the session's shared stack's
(tests/conftest.py; only read here), behind a gateway built in this process per test."""

from __future__ import annotations

import logging
import time
from concurrent import futures

import grpc
import pytest

from shortlist.common import edge
from shortlist.common.rules import Rule
from shortlist.common.stack import free_port
from shortlist.gateway.server import create_server as create_gateway
from shortlist.gateway.service import degraded_order
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


# ---- business rules -------------------------------------------------------------------------

R = common_pb2.Rule


def candidates(backends, user: str = "u5", k: int = 10) -> retrieval_pb2.RetrieveResponse:
    """What retrieval answers the gateway for ``user`` (the same request, asked directly)."""
    from shortlist.v1 import retrieval_pb2_grpc

    with grpc.insecure_channel(backends[0]) as channel:
        return retrieval_pb2_grpc.RetrievalStub(channel).Retrieve(
            retrieval_pb2.RetrieveRequest(user_id=user, k=k), timeout=5)


@pytest.fixture
def gateway_lines(caplog):
    caplog.set_level(logging.INFO, logger=edge.__name__)
    return lambda: [r.fields for r in caplog.records
                    if r.name == edge.__name__ and r.fields.get("server") == "gateway"]


@pytest.mark.parametrize("rule", [R(action=R.BOOST, item_id="i1", factor=0.5),
                                  R(action=R.PIN, item_id="i1"),
                                  R(action=7, item_id="i1")],
                         ids=["boost below 1", "pin without position", "unknown action"])
def test_a_malformed_rule_is_refused_before_any_upstream_call(rule):
    """Nothing listens upstream: the refusal can only come from the gateway's own check."""
    server, channel, stub = gateway((f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(grpc.RpcError) as err:
            stub.Recommend(gateway_pb2.RecommendRequest(user_id="u5", rules=[rule]), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith("rule 1 ")
    finally:
        channel.close()
        server.stop(0)


def test_rules_reach_ranking_which_may_add_a_pinned_item_that_was_no_candidate(backends,
                                                                               gateway_lines):
    ids = set(candidates(backends).candidates.item_ids)
    outside = next(f"i{n}" for n in range(240) if f"i{n}" not in ids)
    server, channel, stub = gateway(backends)
    try:
        resp = stub.Recommend(gateway_pb2.RecommendRequest(
            user_id="u5", k=10, debug=True, rules=[R(action=R.PIN, item_id=outside, position=2)]),
            timeout=5)
        assert not resp.degraded and len(resp.items) == 10
        pinned = resp.items[1]
        assert pinned.item_id == outside and pinned.ranking_rank == 2
        assert pinned.title and pinned.categories  # ranking's catalog describes it
        assert pinned.retrieval_rank == 0 and not pinned.sources
        assert list(pinned.rules) == [f"pin item={outside} at 2"]
        assert gateway_lines()[-1]["rules"] == 1
        stub.Recommend(gateway_pb2.RecommendRequest(user_id="u5", k=10), timeout=5)
        assert "rules" not in gateway_lines()[-1]
    finally:
        channel.close()
        server.stop(0)


def test_rules_hold_when_ranking_is_down(backends, gateway_lines):
    """Served degraded, the gateway applies the rules to retrieval's order itself."""
    retrieved = candidates(backends)
    ids = list(retrieved.candidates.item_ids)
    outside = next(f"i{n}" for n in range(240) if f"i{n}" not in ids)
    deep = ids[12]  # a candidate below the first k
    server, channel, stub = gateway((backends[0], f"127.0.0.1:{free_port()}"))

    def served(*rules):
        return stub.Recommend(gateway_pb2.RecommendRequest(user_id="u5", k=10, debug=True,
                                                           rules=rules), timeout=5)

    try:
        plain = served()
        assert plain.degraded and [i.item_id for i in plain.items] == ids[:10]
        resp = served(R(action=R.PIN, item_id=outside, position=1),
                      R(action=R.PIN, item_id=deep, position=3),
                      R(action=R.EXCLUDE, item_id=ids[0]))
        assert resp.degraded and resp.configuration == "retrieval"
        got = [i.item_id for i in resp.items]
        assert got == [outside, ids[1], deep, *ids[2:9]]
        first, third = resp.items[0], resp.items[2]
        # bare: nothing but its id is known of an item retrieval did not propose
        assert (first.title, first.retrieval_rank, list(first.sources)) == ("", 0, [])
        assert list(first.rules) == [f"pin item={outside} at 1"]
        assert third.retrieval_rank == 13 and third.sources
        assert list(third.rules) == [f"pin item={deep} at 3"]
        assert gateway_lines()[-1]["rules"] == 3 and gateway_lines()[-1]["degraded"]
        # nothing ranked the items, so nothing explains them, debug or not
        assert not any(i.contributions or i.because_of_item_id for i in resp.items)
    finally:
        channel.close()
        server.stop(0)


def test_degraded_category_rules_match_what_retrieval_described(backends):
    """Retrieval describes the first k candidates only: a category exclusion drops every
    undescribed one too (none can be shown to lie outside it), a pin still wins over it."""
    retrieved = candidates(backends)
    details = {it.item_id: it for it in retrieved.items}
    ids = list(retrieved.candidates.item_ids)
    genre = details[ids[0]].categories[0]
    server, channel, stub = gateway((backends[0], f"127.0.0.1:{free_port()}"))
    try:
        resp = stub.Recommend(gateway_pb2.RecommendRequest(
            user_id="u5", k=10, debug=True, rules=[
                R(action=R.EXCLUDE, category=genre),
                R(action=R.PIN, item_id=ids[0], position=1)]), timeout=5)
        kept = [i for i in ids[:10] if genre not in details[i].categories]
        assert [i.item_id for i in resp.items] == [ids[0], *kept]
        assert list(resp.items[0].rules) == [f"pin item={ids[0]} at 1"]
        assert all(genre not in i.categories for i in resp.items[1:])
    finally:
        channel.close()
        server.stop(0)


def test_a_degraded_boost_moves_an_item_as_ranking_would():
    """On a non-ranker order both paths shift the log-odds -ln(60 + position): an item at
    position 12 (0-based) passes position 0 when boosted by more than 72/60."""
    retrieved = retrieval_pb2.RetrieveResponse()
    ids = [f"c{n}" for n in range(20)]
    retrieved.candidates.item_ids.extend(ids)
    retrieved.candidates.retrieval_scores.extend([1.0 - n / 100 for n in range(20)])

    def order(factor):
        return [item for _, item, _ in degraded_order(
            retrieved, [Rule("BOOST", item_id="c12", factor=factor)], 5)]

    assert order(1.25) == ["c12", "c0", "c1", "c2", "c3"]
    assert order(1.19) == ["c0", "c12", "c1", "c2", "c3"]
    assert order(1.01) == ["c0", "c1", "c2", "c3", "c4"]
    assert degraded_order(retrieved, [], 3) == [(0, "c0", []), (1, "c1", []), (2, "c2", [])]


def test_a_pin_is_served_ranked_when_no_candidate_is_left(backends):
    server, channel, stub = gateway(backends)
    try:
        resp = stub.Recommend(gateway_pb2.RecommendRequest(
            user_id="u5", k=10, debug=True,
            filters=common_pb2.Filters(include_categories=["NoSuchCategory"]),
            rules=[R(action=R.PIN, item_id="i4", position=3)]), timeout=5)
        assert not resp.degraded and resp.configuration != "retrieval"
        [item] = resp.items
        assert (item.item_id, item.ranking_rank, item.retrieval_rank) == ("i4", 1, 0)
        assert item.title and list(item.rules) == ["pin item=i4 at 3"]
    finally:
        channel.close()
        server.stop(0)


class ExplainingRanking(ranking_pb2_grpc.RankingServicer):
    """The real ranking server behind a recorder: keeps each RankRequest and stamps a known
    explanation on every item, asked for or not, so what reaches the response is the
    gateway's doing whatever the ranker itself explains."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.requests: list[ranking_pb2.RankRequest] = []

    def Rank(self, request, context):
        self.requests.append(request)
        response = ranking_pb2_grpc.RankingStub(self.channel).Rank(request, timeout=5)
        for item in response.items:
            del item.contributions[:]
            item.contributions.add(feature="probe", description="a probe",
                                   contribution=item.rank / 8)
            item.because_of_item_id = f"seen-{item.item_id}"
        return response


def test_explain_asks_ranking_to_explain_and_passes_the_explanations_on(backends):
    explaining = ExplainingRanking(backends[1])
    proxy = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    ranking_pb2_grpc.add_RankingServicer_to_server(explaining, proxy)
    port = proxy.add_insecure_port("127.0.0.1:0")
    proxy.start()
    server, channel, stub = gateway((backends[0], f"127.0.0.1:{port}"))
    try:
        resp = stub.Recommend(gateway_pb2.RecommendRequest(user_id="u5", k=5, explain=True),
                              timeout=5)
        assert explaining.requests[-1].explain and not resp.degraded and len(resp.items) == 5
        for item in resp.items:
            [c] = item.contributions
            assert (c.feature, c.description, c.contribution) == (
                "probe", "a probe", item.ranking_rank / 8)
            assert item.because_of_item_id == f"seen-{item.item_id}"
        # without explain (debug alone: what the bench times) nobody reads them: not asked for
        # (a second pass over the trees), and not passed on should ranking explain anyway
        quiet = stub.Recommend(gateway_pb2.RecommendRequest(user_id="u5", k=5, debug=True),
                               timeout=5)
        assert not explaining.requests[-1].explain and len(quiet.items) == 5
        assert not any(i.contributions or i.because_of_item_id for i in quiet.items)
    finally:
        channel.close()
        server.stop(0)
        proxy.stop(0)
        explaining.channel.close()
