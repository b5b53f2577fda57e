"""RankingService over the trained synthetic artifact, served by the real ranking server
(``create_server``) on a free port, fed a RankRequest built from a real retriever's output.

Checks the translation (ranked items with ranking's details, timings), each refusal's status
and message, and the one log line the edge writes per request with the service's fields.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from shortlist.common import artifacts, edge
from shortlist.ranking.errors import NotReady
from shortlist.ranking.server import create_server
from shortlist.ranking.service import MAX_ID_LENGTH, MAX_RECENT_ITEMS, RankingService
from shortlist.ranking.settings import RankingSettings
from shortlist.ranking.state import RankingState
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.retrieval.retriever import RetrieveQuery, Retriever
from shortlist.retrieval.service import to_proto
from shortlist.v1 import common_pb2, ranking_pb2, ranking_pb2_grpc

C = grpc.StatusCode


@dataclass
class Served:
    stub: ranking_pb2_grpc.RankingStub
    base: ranking_pb2.RankRequest  # for u5, with the served version

    def request(self, **changes) -> ranking_pb2.RankRequest:
        req = ranking_pb2.RankRequest()
        req.CopyFrom(self.base)
        for key, value in changes.items():
            setattr(req, key, value)
        return req

    def refused(self, request) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as err:
            self.stub.Rank(request, timeout=10)
        return err.value


@pytest.fixture(scope="module")
def served(trained) -> Iterator[Served]:
    version_dir = artifacts.resolve(trained)
    retriever = Retriever(RetrievalModels.load(version_dir), version_dir.name, 500)
    retrieved = to_proto(retriever.retrieve(RetrieveQuery(user_id="u5", max_candidates=50)),
                         retriever, 10)
    base = ranking_pb2.RankRequest(user=retrieved.user, candidates=retrieved.candidates,
                                   items=retrieved.items, k=10, version=retrieved.version)
    server, port = create_server(RankingSettings(address="127.0.0.1:0", artifacts=trained))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield Served(ranking_pb2_grpc.RankingStub(channel), base)
    channel.close()
    server.stop(0)


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger=edge.__name__)
    return lambda: [r.fields for r in caplog.records
                    if r.name == edge.__name__ and r.fields.get("server") == "ranking"]


def test_rank(served, lines):
    req = served.request(k=7, request_id="rid-rank-1")
    resp = served.stub.Rank(req, timeout=10)
    assert [i.rank for i in resp.items] == list(range(1, 8))
    assert {i.item_id for i in resp.items} <= set(req.candidates.item_ids)
    assert all(i.title and i.categories for i in resp.items)
    assert resp.version == req.version
    assert {"features", "model", "mmr", "total"} <= set(resp.timings_ms)
    [line] = lines()
    assert (line["rpc"], line["code"], line["request_id"]) == ("Rank", "OK", "rid-rank-1")
    assert line["user_id"] == "u5" and line["candidates"] == len(req.candidates.item_ids)
    assert line["returned"] == 7 and line["version"] == resp.version
    assert "new_items" not in line


def test_k_zero_is_the_default_and_an_empty_version_the_current_one(served):
    resp = served.stub.Rank(served.request(k=0, version=""), timeout=10)
    assert len(resp.items) == 10 and resp.version == served.base.version


def test_an_unknown_candidate_is_learned_with_the_details_sent(served, lines):
    req = served.request(k=1000)
    req.candidates.item_ids[0] = "svc-upserted-1"
    req.items.append(common_pb2.Item(item_id="svc-upserted-1", title="Upserted",
                                     categories=["Drama"]))
    resp = served.stub.Rank(req, timeout=10)
    [new] = [i for i in resp.items if i.item_id == "svc-upserted-1"]
    assert new.title == "Upserted" and list(new.categories) == ["Drama"]
    assert lines()[0]["new_items"] == 1
    served.stub.Rank(req, timeout=10)
    assert "new_items" not in lines()[1]  # learned once


def ranked(served: Served, *rules: common_pb2.Rule, k: int = 10) -> list:
    req = served.request(k=k)
    req.rules.extend(rules)
    return list(served.stub.Rank(req, timeout=10).items)


R = common_pb2.Rule


def test_rules_pin_boost_bury_and_exclude_with_a_note_on_each_item_they_touch(served, lines):
    plain = ranked(served)
    ids = [i.item_id for i in plain]
    # pin a candidate from below the top 10 at 1, and an item that is no candidate at 3
    below = next(i for i in served.base.candidates.item_ids if i not in ids)
    outside = "i239" if "i239" not in served.base.candidates.item_ids else "i238"
    out = ranked(served, R(action=R.PIN, item_id=below, position=1),
                 R(action=R.PIN, item_id=outside, position=3))
    assert [i.item_id for i in out][0] == below and out[2].item_id == outside
    assert list(out[0].rules) == [f"pin item={below} at 1"]
    assert [i.rank for i in out] == list(range(1, 11)) and len({i.item_id for i in out}) == 10
    assert [i.item_id for i in out if i.item_id not in (below, outside)] == ids[:8]
    assert lines()[-1]["rules"] == 2
    # exclude the top item's category: none of it is left
    top_genre = plain[0].categories[0]
    out = ranked(served, R(action=R.EXCLUDE, category=top_genre))
    assert out and all(top_genre not in i.categories for i in out)
    # bury the top item a lot: it leaves the top; boost the 10th: it rises
    out = ranked(served, R(action=R.BURY, item_id=ids[0], factor=1e6),
                 R(action=R.BOOST, item_id=ids[9], factor=1e6))
    got = [i.item_id for i in out]
    assert ids[0] not in got and got.index(ids[9]) < 9
    assert list(out[got.index(ids[9])].rules) == [f"boost item={ids[9]} x1e+06"]


def test_explain_gives_each_item_its_top_contributions_and_closest_recent_item(served):
    plain = served.stub.Rank(served.request(), timeout=10)
    assert all(not i.contributions and not i.because_of_item_id for i in plain.items)
    req = served.request(explain=True)
    req.rules.append(R(action=R.PIN, item_id="i239", position=2))  # no candidate: no features
    resp = served.stub.Rank(req, timeout=10)
    assert "explain" in resp.timings_ms and "explain" not in plain.timings_ms
    recent = set(req.user.recent_item_ids)
    assert recent
    for item in resp.items:
        if item.item_id == "i239" and item.item_id not in req.candidates.item_ids:
            assert not item.contributions
            continue
        values = [c.contribution for c in item.contributions]
        assert 1 <= len(values) <= 3 and all(c.description for c in item.contributions)
        assert [abs(v) for v in values] == sorted((abs(v) for v in values), reverse=True)
        assert item.because_of_item_id in recent
    # the order is the same with or without explanations
    assert [i.item_id for i in served.stub.Rank(served.request(explain=True), timeout=10).items
            ] == [i.item_id for i in plain.items]


def test_explain_says_where_the_ranker_put_each_item_before_diversity(served):
    """score_rank is the position by score alone: with no diversity it is the rank itself;
    with strong diversity some items move, and the ranker's best is still served first."""
    flat = served.stub.Rank(served.request(explain=True, mmr_lambda=1.0), timeout=10)
    assert [i.score_rank for i in flat.items] == [i.rank for i in flat.items]
    diverse = served.stub.Rank(served.request(explain=True, mmr_lambda=0.2), timeout=10)
    assert diverse.items[0].score_rank == 1
    assert all(i.score_rank >= 1 for i in diverse.items)
    assert any(i.score_rank != i.rank for i in diverse.items)
    merged = served.stub.Rank(served.request(explain=True, order="retrieval"), timeout=10)
    assert all(i.score_rank == 0 for i in merged.items)  # no ranker score to stand by


def test_a_malformed_rule_is_invalid_argument(served):
    req = served.request()
    req.rules.append(R(action=R.BOOST, category="Comedy", factor=0.5))
    err = served.refused(req)
    assert err.code() == C.INVALID_ARGUMENT and "factor must be greater than 1" in err.details()


def test_an_order_replaces_the_artifacts_for_one_request(served):
    """An experiment variant's order: a generator's own order over the candidates, or the
    merged one; the response names it, and the artifact's order serves the next request."""
    req = served.request(k=10, order="retrieval")
    resp = served.stub.Rank(req, timeout=10)
    assert resp.configuration == "retrieval"
    assert [i.item_id for i in resp.items] == list(req.candidates.item_ids[:10])
    gens = list(req.candidates.generators)
    g = gens.index("trending")
    ranks = req.candidates.generator_ranks
    proposed = sorted((ranks[row * len(gens) + g], item)
                      for row, item in enumerate(req.candidates.item_ids)
                      if ranks[row * len(gens) + g] > 0)
    resp = served.stub.Rank(served.request(k=5, order="generator:trending"), timeout=10)
    assert resp.configuration == "generator:trending"
    assert [i.item_id for i in resp.items] == [item for _, item in proposed[:5]]
    assert served.stub.Rank(served.request(), timeout=10).configuration.startswith("ranker")


def _edit(served: Served, edit) -> ranking_pb2.RankRequest:
    req = served.request()
    edit(req)
    return req


def _set_first_id(value: str):
    def edit(req):
        req.candidates.item_ids[0] = value
    return edit


def _set_user(**fields):
    def edit(req):
        for key, value in fields.items():
            if key == "recent_item_ids":
                req.user.recent_item_ids[:] = value
            else:
                setattr(req.user, key, value)
    return edit


def _duplicate_first(req):
    req.candidates.item_ids[1] = req.candidates.item_ids[0]


REFUSALS = [
    ("k too large", lambda s: s.request(k=1001), C.INVALID_ARGUMENT,
     "k must be in [1, 1000], got 1001"),
    ("negative k", lambda s: s.request(k=-1), C.INVALID_ARGUMENT,
     "k must be in [1, 1000], got -1"),
    ("mmr_lambda out of range", lambda s: s.request(mmr_lambda=2.0), C.INVALID_ARGUMENT,
     "mmr_lambda must be in [0, 1], got 2.0"),
    ("empty candidate id", lambda s: _edit(s, _set_first_id("")), C.INVALID_ARGUMENT,
     "candidate item id is empty"),
    ("NUL in a candidate id", lambda s: _edit(s, _set_first_id("i\x00")), C.INVALID_ARGUMENT,
     "candidate item id contains a NUL character"),
    ("long candidate id", lambda s: _edit(s, _set_first_id("x" * (MAX_ID_LENGTH + 1))),
     C.INVALID_ARGUMENT, f"candidate item id longer than {MAX_ID_LENGTH} characters"),
    ("duplicate candidates", lambda s: _edit(s, _duplicate_first), C.INVALID_ARGUMENT,
     "duplicate candidate item id"),
    ("negative history", lambda s: _edit(s, _set_user(history_length=-1)), C.INVALID_ARGUMENT,
     "user.history_length must be >= 0, got -1"),
    ("too many recent items",
     lambda s: _edit(s, _set_user(recent_item_ids=["i1"] * (MAX_RECENT_ITEMS + 1))),
     C.INVALID_ARGUMENT, f"user.recent_item_ids has more than {MAX_RECENT_ITEMS} entries"),
    ("unknown order", lambda s: s.request(order="popular"), C.INVALID_ARGUMENT,
     "order: unknown order 'popular': expected 'ranker', 'retrieval' or generator:NAME"),
    ("order of a generator the version lacks", lambda s: s.request(order="generator:nope"),
     C.INVALID_ARGUMENT, "order: this version has no generator 'nope' (it has als, "),
    ("version not loaded", lambda s: s.request(version="nope"), C.FAILED_PRECONDITION,
     "version nope is not loaded here (serving "),
]


@pytest.mark.parametrize(("build", "code", "message"), [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_refusals(served, lines, build, code, message):
    err = served.refused(build(served))
    assert err.code() == code and err.details().startswith(message)
    [line] = lines()
    assert line["code"] == code.name and line["error"] == err.details()


def test_before_a_version_is_loaded_rank_is_not_ready(served):
    """Called directly (no server): the typed error the edge maps to UNAVAILABLE."""
    service = RankingService(RankingSettings(), RankingState())
    with pytest.raises(NotReady) as err:
        service.Rank(served.request(), None)
    assert err.value.status == "UNAVAILABLE"
