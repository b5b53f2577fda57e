"""Bad input on every RPC of every server, by a table and by Hypothesis-generated requests.

Real retrieval, ranking and gateway servers run in-process. Every malformed request must get
a deliberate status (INVALID_ARGUMENT, NOT_FOUND, OK with a fallback, ...), never INTERNAL or
UNKNOWN (an unhandled exception), and the servers must keep serving afterwards.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from shortlist.gateway.server import create_server as create_gateway
from shortlist.gateway.settings import GatewaySettings
from shortlist.ranking.server import create_server as create_ranking
from shortlist.ranking.settings import RankingSettings
from shortlist.retrieval.server import create_server as create_retrieval
from shortlist.retrieval.settings import RetrievalSettings
from shortlist.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    experiment_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
)

C = grpc.StatusCode
OK, INVALID, NOT_FOUND = C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND
# Statuses that mean "the server crashed on this input" (an unhandled exception).
CRASH = {C.INTERNAL, C.UNKNOWN}
# A message over the receiving side's size limit is rejected by gRPC itself.
TOO_BIG = C.RESOURCE_EXHAUSTED
TIMEOUT_S = 20.0

INT32_MAX, INT32_MIN = 2**31 - 1, -(2**31)
INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)
LONG_ID = "x" * 10_000
UNICODE_IDS = ["🎬🍿", "שלום-עולם", "e\u0301\u0301\u0301", "\u202eevil", "日本語", "\ufeffbom",
               "a\u200db", "Ω≈ç√∫"]
GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "SciFi"]


# -- servers ------------------------------------------------------------------------------


@dataclass(repr=False)  # keeps Hypothesis' failure reports readable
class Stubs:
    gateway: gateway_pb2_grpc.GatewayStub
    retrieval: retrieval_pb2_grpc.RetrievalStub
    ranking: ranking_pb2_grpc.RankingStub
    retrieval_admin: admin_pb2_grpc.AdminStub
    ranking_admin: admin_pb2_grpc.AdminStub
    health: dict[str, health_pb2_grpc.HealthStub]
    version: str
    # A real RankRequest (retrieval's candidates for an established user), to mutate.
    rank_base: ranking_pb2.RankRequest


@pytest.fixture(scope="module")
def stubs(trained, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-input")
    root = tmp / "artifacts"
    shutil.copytree(trained, root)  # SetVersion writes a pin file into the root
    retrieval, rport = create_retrieval(RetrievalSettings(
        address="127.0.0.1:0", artifacts=root, event_log=tmp / "events.db"))
    ranking, kport = create_ranking(RankingSettings(address="127.0.0.1:0", artifacts=root))
    gateway, gport = create_gateway(GatewaySettings(
        address="127.0.0.1:0", retrieval_target=f"127.0.0.1:{rport}",
        ranking_target=f"127.0.0.1:{kport}", request_timeout_s=5.0, retrieval_timeout_s=5.0,
        ranking_timeout_s=5.0, experiment_file=str(tmp / "experiment.json"),
        impressions_log=str(tmp / "impressions.db")))
    channels = {name: grpc.insecure_channel(f"127.0.0.1:{port}")
                for name, port in (("retrieval", rport), ("ranking", kport), ("gateway", gport))}
    rstub = retrieval_pb2_grpc.RetrievalStub(channels["retrieval"])
    version = admin_pb2_grpc.AdminStub(channels["retrieval"]).ListVersions(
        admin_pb2.ListVersionsRequest(), timeout=TIMEOUT_S).serving
    retrieved = rstub.Retrieve(retrieval_pb2.RetrieveRequest(user_id="u5", max_candidates=50),
                               timeout=TIMEOUT_S)
    base = ranking_pb2.RankRequest(user=retrieved.user, candidates=retrieved.candidates,
                                   items=retrieved.items, k=10, version=retrieved.version)
    yield Stubs(
        gateway=gateway_pb2_grpc.GatewayStub(channels["gateway"]), retrieval=rstub,
        ranking=ranking_pb2_grpc.RankingStub(channels["ranking"]),
        retrieval_admin=admin_pb2_grpc.AdminStub(channels["retrieval"]),
        ranking_admin=admin_pb2_grpc.AdminStub(channels["ranking"]),
        health={n: health_pb2_grpc.HealthStub(ch) for n, ch in channels.items()},
        version=version, rank_base=base,
    )
    for ch in channels.values():
        ch.close()
    for server in (gateway, ranking, retrieval):
        server.stop(0)


def call(method, request) -> tuple[grpc.StatusCode, Any, str]:
    """(status, response or None, details) of one unary call."""
    try:
        return OK, method(request, timeout=TIMEOUT_S), ""
    except grpc.RpcError as exc:
        return exc.code(), None, exc.details() or ""


def assert_serving(s: Stubs) -> None:
    """Every server still answers health checks and real requests."""
    for name, stub in s.health.items():
        resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING, name
    resp = s.gateway.Recommend(gateway_pb2.RecommendRequest(user_id="u5", k=5),
                               timeout=TIMEOUT_S)
    assert len(resp.items) == 5 and not resp.degraded
    resp = s.retrieval.SimilarItems(retrieval_pb2.SimilarItemsRequest(item_id="i3", k=3),
                                    timeout=TIMEOUT_S)
    assert len(resp.items) == 3
    resp = s.ranking.Rank(s.rank_base, timeout=TIMEOUT_S)
    assert len(resp.items) == 10


# -- request builders ---------------------------------------------------------------------


def upserted(s: Stubs, item_id: str, title: str, request):
    """``request``, once ``item_id`` has been upserted (rows must not depend on each other)."""
    s.retrieval.UpsertItem(retrieval_pb2.UpsertItemRequest(item_id=item_id, title=title),
                           timeout=TIMEOUT_S)
    return request


@dataclass(frozen=True)
class Cand:
    """One candidate as a test writes it; ``to_columns`` lays a list out as Rank takes it."""

    item: common_pb2.Item
    sources: tuple[tuple[str, float, int], ...] = ()  # (generator, score, rank)
    retrieval_score: float = 0.1
    affinity: float = 0.2  # every generator's affinity for the item


def to_columns(cands) -> tuple[retrieval_pb2.CandidateColumns, list[common_pb2.Item]]:
    gens: list[str] = []
    for c in cands:
        gens.extend(g for g, _, _ in c.sources if g not in gens)
    cols = retrieval_pb2.CandidateColumns(
        item_ids=[c.item.item_id for c in cands],
        retrieval_scores=[c.retrieval_score for c in cands], generators=gens)
    for c in cands:
        scores, ranks = [math.nan] * len(gens), [0] * len(gens)
        for g, score, rank in c.sources:
            scores[gens.index(g)], ranks[gens.index(g)] = score, rank
        cols.generator_scores.extend(scores)
        cols.generator_ranks.extend(ranks)
        cols.generator_affinities.extend([c.affinity] * len(gens))
    return cols, [c.item for c in cands]


def rank_request(s: Stubs, **changes) -> ranking_pb2.RankRequest:
    req = ranking_pb2.RankRequest()
    req.CopyFrom(s.rank_base)
    for key, value in changes.items():
        if key == "candidates":
            cols, items = to_columns(value)
            req.candidates.CopyFrom(cols)
            del req.items[:]
            req.items.extend(items)
        else:
            setattr(req, key, value)
    return req


def rank_with(s: Stubs, edit) -> ranking_pb2.RankRequest:
    """The base RankRequest with ``edit(request)`` applied."""
    req = rank_request(s)
    edit(req)
    return req


def candidate(item_id: str, categories=("Drama",), score: float = 0.5,
              generator: str = "content") -> Cand:
    return Cand(common_pb2.Item(item_id=item_id, title=f"title {item_id}",
                                categories=list(categories)), ((generator, score, 1),))


def set_scores(value: float):
    def edit(req):
        c = req.candidates
        for name in ("retrieval_scores", "generator_scores", "generator_affinities"):
            column = getattr(c, name)
            column[:] = [value] * len(column)
    return edit


def set_columns(**lengths):
    """Truncate or pad candidate columns: malformed shapes a sender might produce."""
    def edit(req):
        for name, n in lengths.items():
            column = getattr(req.candidates, name)
            values = list(column)
            del column[:]
            column.extend((values * (1 + n // max(1, len(values)) ) + [0] * n)[:n])
    return edit


def set_user(**fields):
    def edit(req):
        for key, value in fields.items():
            if key == "recent_item_ids":
                del req.user.recent_item_ids[:]
                req.user.recent_item_ids.extend(value)
            else:
                setattr(req.user, key, value)
    return edit


def rename_first(item_id: str):
    def edit(req):
        req.candidates.item_ids[0] = item_id
    return edit


# -- the table ----------------------------------------------------------------------------

# (case id, stub, rpc, request builder taking Stubs, expected status or statuses, check on the
# response, known bug: a reason to expect this row to fail until it is fixed)
Row = tuple[str, str, str, Any, Any, Any, str]


G, R, K = gateway_pb2, retrieval_pb2, ranking_pb2
F = common_pb2.Filters


def n_items(n):
    return lambda resp: len(resp.items) == n


def rows() -> list[Row]:
    t: list[Row] = []

    def add(case, stub, rpc, build, expected, check=None, known_bug=""):
        t.append((case, stub, rpc, build if callable(build) else (lambda _s, b=build: b),
                  expected, check, known_bug))

    # Gateway.Recommend
    rec = ("gateway", "Recommend")
    add("ok", *rec, G.RecommendRequest(user_id="u5", k=5), OK, n_items(5))
    add("k=0 uses the default", *rec, G.RecommendRequest(user_id="u5"), OK, n_items(10))
    for k in (-1, 101, INT32_MAX, INT32_MIN):
        add(f"k={k}", *rec, G.RecommendRequest(user_id="u5", k=k), INVALID)
    add("k=max", *rec, G.RecommendRequest(user_id="u5", k=100), OK)
    add("empty user", *rec, G.RecommendRequest(user_id=""), INVALID)
    add("10k-char user", *rec, G.RecommendRequest(user_id=LONG_ID), INVALID)
    add("257-char user", *rec, G.RecommendRequest(user_id="u" * 257), INVALID)
    add("256-char user (new)", *rec, G.RecommendRequest(user_id="u" * 256), OK, n_items(10))
    add("NUL in user", *rec, G.RecommendRequest(user_id="u\x005"), INVALID)
    for uid in UNICODE_IDS:
        add(f"unicode user {uid!r}", *rec, G.RecommendRequest(user_id=uid), OK, n_items(10))
    add("unknown user", *rec, G.RecommendRequest(user_id="nobody"), OK, n_items(10))
    add("unknown recent items ignored", *rec,
        G.RecommendRequest(user_id="nobody", recent_item_ids=["nope", "🎬", "i99999"]), OK,
        n_items(10))
    add("known and unknown recent items", *rec,
        G.RecommendRequest(user_id="u5", recent_item_ids=["i3", "nope"]), OK, n_items(10))
    add("empty recent item id", *rec, G.RecommendRequest(user_id="u5", recent_item_ids=[""]),
        INVALID)
    add("NUL in recent item id", *rec,
        G.RecommendRequest(user_id="u5", recent_item_ids=["i\x003"]), INVALID)
    add("10k-char recent item id", *rec,
        G.RecommendRequest(user_id="u5", recent_item_ids=[LONG_ID]), INVALID)
    add("1001 recent items", *rec,
        G.RecommendRequest(user_id="u5", recent_item_ids=[f"i{i}" for i in range(1001)]),
        INVALID)
    add("100k recent items", *rec,
        G.RecommendRequest(user_id="u5", recent_item_ids=["i1"] * 100_000), INVALID)
    add("100k recent items over the message limit", *rec,
        G.RecommendRequest(user_id="u5", recent_item_ids=["i" * 64] * 100_000), TOO_BIG)
    add("unknown excluded items ignored", *rec,
        G.RecommendRequest(user_id="u5", filters=F(exclude_item_ids=["nope", "🎬"])), OK,
        n_items(10))
    add("unknown include category: nothing to recommend", *rec,
        G.RecommendRequest(user_id="u5", filters=F(include_categories=["Nope"])), OK,
        n_items(0))
    add("every category excluded", *rec,
        G.RecommendRequest(user_id="u5", filters=F(exclude_categories=GENRES)), OK, n_items(0))
    add("unknown excluded category ignored", *rec,
        G.RecommendRequest(user_id="u5", filters=F(exclude_categories=["Nope"])), OK,
        n_items(10))
    add("100k excluded items", *rec,
        G.RecommendRequest(user_id="u5", filters=F(exclude_item_ids=["i1"] * 100_000)),
        INVALID)
    add("10k-char category", *rec,
        G.RecommendRequest(user_id="u5", filters=F(include_categories=[LONG_ID])), INVALID)
    add("empty category", *rec,
        G.RecommendRequest(user_id="u5", filters=F(exclude_categories=[""])), INVALID)

    # Gateway.SimilarItems
    sim = ("gateway", "SimilarItems")
    add("ok", *sim, R.SimilarItemsRequest(item_id="i3", k=5), OK, n_items(5))
    add("k=0 uses the default", *sim, R.SimilarItemsRequest(item_id="i3"), OK, n_items(10))
    for k in (-1, 101, INT32_MAX, INT32_MIN):
        add(f"k={k}", *sim, R.SimilarItemsRequest(item_id="i3", k=k), INVALID)
    add("empty item", *sim, R.SimilarItemsRequest(item_id=""), INVALID)
    add("10k-char item", *sim, R.SimilarItemsRequest(item_id=LONG_ID), INVALID)
    add("NUL in item", *sim, R.SimilarItemsRequest(item_id="i\x003"), INVALID)
    add("unknown item", *sim, R.SimilarItemsRequest(item_id="nope"), NOT_FOUND)
    for iid in UNICODE_IDS:
        add(f"unicode item {iid!r}", *sim, R.SimilarItemsRequest(item_id=iid), NOT_FOUND)

    # Gateway.RecordInteraction (distinct users: every OK row is a durable write)
    ri = ("gateway", "RecordInteraction")
    add("ok", *ri, R.RecordInteractionRequest(user_id="bad-input-1", item_id="i3"), OK)
    add("negative weight (a dislike) accepted", *ri,
        R.RecordInteractionRequest(user_id="bad-input-2", item_id="i3", weight=-1.0), OK)
    add("empty user", *ri, R.RecordInteractionRequest(user_id="", item_id="i3"), INVALID)
    add("empty item", *ri, R.RecordInteractionRequest(user_id="bad-input-3", item_id=""),
        INVALID)
    add("10k-char user", *ri, R.RecordInteractionRequest(user_id=LONG_ID, item_id="i3"),
        INVALID)
    add("NUL in user", *ri, R.RecordInteractionRequest(user_id="a\x00", item_id="i3"), INVALID)
    add("NUL in item", *ri, R.RecordInteractionRequest(user_id="bad-input-3", item_id="i3\x00"),
        INVALID)
    add("unknown item", *ri, R.RecordInteractionRequest(user_id="bad-input-3", item_id="nope"),
        NOT_FOUND)
    for w in (math.nan, math.inf, -math.inf, 1e30, -1e30):
        add(f"weight={w}", *ri,
            R.RecordInteractionRequest(user_id="bad-input-3", item_id="i3", weight=w), INVALID)
    for ts in (-1, INT64_MIN):
        add(f"timestamp={ts}", *ri,
            R.RecordInteractionRequest(user_id="bad-input-3", item_id="i3", timestamp=ts),
            INVALID)
    add("timestamp far in the future", *ri,
        R.RecordInteractionRequest(user_id="bad-input-3", item_id="i3", timestamp=INT64_MAX),
        INVALID)
    add("timestamp an hour ahead (clock skew)", *ri, lambda _s: R.RecordInteractionRequest(
        user_id="bad-input-4", item_id="i3", timestamp=int(time.time()) + 3600), OK)
    add("timestamp a week ahead", *ri, lambda _s: R.RecordInteractionRequest(
        user_id="bad-input-4", item_id="i3", timestamp=int(time.time()) + 7 * 86400), INVALID)
    for n, uid in enumerate(UNICODE_IDS):
        add(f"unicode user {uid!r}", *ri,
            R.RecordInteractionRequest(user_id=f"{uid}-{n}", item_id="i3"), OK)

    # Gateway.UpsertItem
    up = ("gateway", "UpsertItem")
    add("ok", *up, R.UpsertItemRequest(item_id="bad-new-1", title="Space Robot",
                                       categories=["SciFi"], text="robot"), OK)
    add("no categories, no text", *up, R.UpsertItemRequest(item_id="bad-new-2", title="T"), OK)
    add("punctuation-only title", *up, R.UpsertItemRequest(item_id="bad-new-3", title="!?!"),
        OK)
    add("unicode everywhere", *up, R.UpsertItemRequest(
        item_id="🎬-new", title="שלום e\u0301 🎬", categories=["日本語"], text="\u202e🍿"), OK)
    add("empty item", *up, R.UpsertItemRequest(item_id="", title="T"), INVALID)
    add("10k-char item", *up, R.UpsertItemRequest(item_id=LONG_ID, title="T"), INVALID)
    add("NUL in item", *up, R.UpsertItemRequest(item_id="n\x00", title="T"), INVALID)
    add("empty title", *up, R.UpsertItemRequest(item_id="bad-new-4", title=""), INVALID)
    add("blank title", *up, R.UpsertItemRequest(item_id="bad-new-4", title=" \t\n"), INVALID)
    add("huge title", *up, R.UpsertItemRequest(item_id="bad-new-4", title="t" * 20_001),
        INVALID)
    add("huge text", *up, R.UpsertItemRequest(item_id="bad-new-4", title="T",
                                              text="t" * 20_001), INVALID)
    add("NUL in text", *up, R.UpsertItemRequest(item_id="bad-new-4", title="T", text="a\x00"),
        INVALID)
    add("NUL in title", *up, R.UpsertItemRequest(item_id="bad-new-4", title="a\x00"), INVALID)
    add("empty category", *up, R.UpsertItemRequest(item_id="bad-new-4", title="T",
                                                   categories=[""]), INVALID)
    add("1001 categories", *up, R.UpsertItemRequest(
        item_id="bad-new-4", title="T", categories=[f"c{i}" for i in range(1001)]), INVALID)
    # Runs the search index would tokenise in quadratic time (see retrieval/service.py).
    add("20,000-letter word in the title", *up,
        R.UpsertItemRequest(item_id="bad-new-4", title="a" * 20_000), INVALID)
    add("300-digit number in the text", *up,
        R.UpsertItemRequest(item_id="bad-new-4", title="T", text="1" * 300), INVALID)
    add("accents that fold into one long word", *up,
        R.UpsertItemRequest(item_id="bad-new-4", title="T", text="e\u0301" * 300), INVALID)
    add("a 300-space run in the title", *up,
        R.UpsertItemRequest(item_id="bad-new-4", title="x" + " " * 300 + "(1999)"), INVALID)
    add("a category that folds into a long word", *up,
        R.UpsertItemRequest(item_id="bad-new-4", title="T", categories=["\u3300" * 100]),
        INVALID)
    add("256-letter word and long text of short words", *up, R.UpsertItemRequest(
        item_id="bad-new-5", title="b" * 256, text="word " * 3999), OK)
    add("text over the message limit", *up, R.UpsertItemRequest(
        item_id="bad-new-4", title="T", text="t" * 5_000_000), TOO_BIG)

    # Gateway.SearchItems
    se = ("gateway", "SearchItems")
    add("ok", *se, R.SearchItemsRequest(query="space robot", k=5), OK)
    add("k=0 uses the default", *se, R.SearchItemsRequest(query="robot"), OK)
    add("typo", *se, R.SearchItemsRequest(query="spcae robto"), OK)
    for k in (-1, 101, INT32_MAX, INT32_MIN):
        add(f"k={k}", *se, R.SearchItemsRequest(query="robot", k=k), INVALID)
    add("empty query", *se, R.SearchItemsRequest(query=""), INVALID)
    add("blank query", *se, R.SearchItemsRequest(query=" \t "), INVALID)
    add("513-char query", *se, R.SearchItemsRequest(query="q" * 513), INVALID)
    add("NUL in query", *se, R.SearchItemsRequest(query="robot\x00"), INVALID)
    for q in [*UNICODE_IDS, "!!!", "a", "((", "*", "\\", "%_"]:
        add(f"query {q!r}", *se, R.SearchItemsRequest(query=q), OK)

    # Gateway.ListVersions / SetVersion
    add("ok", "gateway", "ListVersions", admin_pb2.ListVersionsRequest(), OK)
    for name, admin in (("gateway", "gateway"), ("retrieval", "retrieval_admin"),
                        ("ranking", "ranking_admin")):
        sv = (admin, "SetVersion")
        add(f"{name}: pin the serving version", *sv,
            lambda s: admin_pb2.SetVersionRequest(version=s.version), OK)
        add(f"{name}: unpin", *sv, admin_pb2.SetVersionRequest(version=""), OK)
        add(f"{name}: unknown version", *sv, admin_pb2.SetVersionRequest(version="20990101"),
            NOT_FOUND)
        for v in ("../etc", ".", "..", "a/b", "/etc", ".hidden", "v" * 300):
            add(f"{name}: version {v[:12]!r}", *sv, admin_pb2.SetVersionRequest(version=v),
                INVALID)
        for v in ("a\\b", "v\x00", "é" * 200):
            add(f"{name}: version {v[:12]!r}", *sv, admin_pb2.SetVersionRequest(version=v),
                INVALID)
        for v in UNICODE_IDS:
            add(f"{name}: unicode version {v!r}", *sv, admin_pb2.SetVersionRequest(version=v),
                NOT_FOUND)
        if admin != "gateway":
            add(f"{name}: ok", admin, "ListVersions", admin_pb2.ListVersionsRequest(), OK)

    # Retrieval, called directly
    rt = ("retrieval", "Retrieve")
    add("ok", *rt, R.RetrieveRequest(user_id="u5"), OK)
    add("max_candidates=0 uses the default", *rt, R.RetrieveRequest(user_id="u5"), OK)
    add("max_candidates=max", *rt, R.RetrieveRequest(user_id="u5", max_candidates=2000), OK)
    for m in (-1, 2001, INT32_MAX, INT32_MIN):
        add(f"max_candidates={m}", *rt, R.RetrieveRequest(user_id="u5", max_candidates=m),
            INVALID)
    add("empty user", *rt, R.RetrieveRequest(user_id=""), INVALID)
    add("10k-char user", *rt, R.RetrieveRequest(user_id=LONG_ID), INVALID)
    add("NUL in user", *rt, R.RetrieveRequest(user_id="\x00"), INVALID)
    for uid in UNICODE_IDS:
        add(f"unicode user {uid!r}", *rt, R.RetrieveRequest(user_id=uid), OK)
    add("unknown recent items ignored", *rt,
        R.RetrieveRequest(user_id="u5", recent_item_ids=["nope", "🎬"]), OK)
    add("NUL in recent item", *rt, R.RetrieveRequest(user_id="u5", recent_item_ids=["\x00"]),
        INVALID)
    add("100k recent items", *rt,
        R.RetrieveRequest(user_id="u5", recent_item_ids=["i1"] * 100_000), INVALID)
    add("100k include categories", *rt,
        R.RetrieveRequest(user_id="u5", filters=F(include_categories=["x"] * 100_000)),
        INVALID)
    add("every item excluded", *rt, R.RetrieveRequest(
        user_id="u5", filters=F(exclude_item_ids=[f"i{i}" for i in range(240)])), OK)

    rs = ("retrieval", "SimilarItems")
    add("k=max", *rs, R.SimilarItemsRequest(item_id="i3", k=1000), OK)
    for k in (-1, 1001, INT32_MAX, INT32_MIN):
        add(f"k={k}", *rs, R.SimilarItemsRequest(item_id="i3", k=k), INVALID)
    add("empty item", *rs, R.SimilarItemsRequest(item_id=""), INVALID)
    add("NUL in item", *rs, R.SimilarItemsRequest(item_id="i3\x00"), INVALID)
    add("unknown item", *rs, R.SimilarItemsRequest(item_id="nope"), NOT_FOUND)
    add("item without content terms", *rs, lambda s: upserted(
        s, "bad-new-r0", "!?!", R.SimilarItemsRequest(item_id="bad-new-r0")), OK)

    rr = ("retrieval", "RecordInteraction")
    add("ok", *rr, R.RecordInteractionRequest(user_id="bad-input-r1", item_id="i4"), OK)
    add("NaN weight", *rr, R.RecordInteractionRequest(user_id="bad-input-r2", item_id="i4",
                                                      weight=math.nan), INVALID)
    add("negative timestamp", *rr, R.RecordInteractionRequest(
        user_id="bad-input-r2", item_id="i4", timestamp=-5), INVALID)
    add("timestamp far in the future", *rr, R.RecordInteractionRequest(
        user_id="bad-input-r2", item_id="i4", timestamp=10**15), INVALID)
    add("unknown item", *rr, R.RecordInteractionRequest(user_id="bad-input-r2",
                                                        item_id="nope"), NOT_FOUND)
    add("NUL in user", *rr, R.RecordInteractionRequest(user_id="\x00", item_id="i4"), INVALID)
    add("upserted item", *rr, lambda s: upserted(
        s, "bad-new-r1", "Haunted Night",
        R.RecordInteractionRequest(user_id="bad-input-r3", item_id="bad-new-r1")), OK)

    ru = ("retrieval", "UpsertItem")
    add("ok", *ru, R.UpsertItemRequest(item_id="bad-new-r1", title="Haunted Night"), OK)
    add("update an existing item", *ru, lambda s: upserted(
        s, "bad-new-r1", "Haunted Night", R.UpsertItemRequest(item_id="bad-new-r1",
                                                              title="Haunted Night 2")), OK)
    add("empty title", *ru, R.UpsertItemRequest(item_id="bad-new-r2", title=""), INVALID)
    add("NUL in item", *ru, R.UpsertItemRequest(item_id="\x00", title="T"), INVALID)
    add("NUL in category", *ru, R.UpsertItemRequest(item_id="bad-new-r2", title="T",
                                                    categories=["a\x00"]), INVALID)

    rq = ("retrieval", "SearchItems")
    add("ok", *rq, R.SearchItemsRequest(query="haunted", k=1000), OK)
    for k in (-1, 1001, INT32_MAX, INT32_MIN):
        add(f"k={k}", *rq, R.SearchItemsRequest(query="robot", k=k), INVALID)
    add("empty query", *rq, R.SearchItemsRequest(query=""), INVALID)
    add("NUL in query", *rq, R.SearchItemsRequest(query="\x00"), INVALID)
    add("emoji query", *rq, R.SearchItemsRequest(query="🎬"), OK)

    # Ranking.Rank, from a real request retrieval produced
    rk = ("ranking", "Rank")
    add("ok", *rk, lambda s: rank_request(s), OK, n_items(10))
    add("k=0 uses the default", *rk, lambda s: rank_request(s, k=0), OK, n_items(10))
    add("k=max returns what exists", *rk, lambda s: rank_request(s, k=1000), OK)
    for k in (-1, 1001, INT32_MAX, INT32_MIN):
        add(f"k={k}", *rk, lambda s, k=k: rank_request(s, k=k), INVALID)
    add("no candidates", *rk, lambda s: rank_request(s, candidates=[]), OK, n_items(0))
    add("5001 candidates", *rk, lambda s: rank_request(
        s, candidates=[candidate(f"many-{i}") for i in range(5001)]), INVALID)
    add("one candidate", *rk, lambda s: rank_request(s, candidates=[candidate("i1")]), OK,
        n_items(1))
    add("duplicate candidates", *rk,
        lambda s: rank_request(s, candidates=[candidate("i1"), candidate("i2"), candidate("i1")]),
        INVALID)
    add("unknown items are learned", *rk, lambda s: rank_request(
        s, candidates=[candidate("bad-rank-1"), candidate("bad-rank-2", ["Nope"]),
                       candidate("i1")]), OK, n_items(3))
    add("unicode item ids", *rk, lambda s: rank_request(
        s, candidates=[candidate(f"{u}-rank") for u in UNICODE_IDS]), OK)
    add("empty item id", *rk, lambda s: rank_request(s, candidates=[candidate("")]), INVALID)
    add("candidate without an item", *rk, lambda s: rank_request(
        s, candidates=[Cand(common_pb2.Item())]), INVALID)
    add("undescribed unknown candidate is learned bare", *rk,
        lambda s: rank_with(s, lambda r: (rename_first("bad-rank-4")(r), r.ClearField("items"))),
        OK, n_items(10))
    add("retrieval_scores shorter than item_ids", *rk,
        lambda s: rank_with(s, set_columns(retrieval_scores=3)), INVALID)
    add("generator_affinities not candidates x generators", *rk,
        lambda s: rank_with(s, set_columns(generator_affinities=5)), INVALID)
    add("no generator_affinities at all (an older sender)", *rk,
        lambda s: rank_with(s, lambda r: r.candidates.ClearField("generator_affinities")), OK)
    add("generator_scores not candidates x generators", *rk,
        lambda s: rank_with(s, set_columns(generator_scores=7)), INVALID)
    add("generator_ranks not candidates x generators", *rk,
        lambda s: rank_with(s, set_columns(generator_ranks=7)), INVALID)
    add("repeated generator name", *rk, lambda s: rank_with(
        s, lambda r: r.candidates.generators.__setitem__(1, r.candidates.generators[0])),
        INVALID)
    add("NUL in item id", *rk, lambda s: rank_request(s, candidates=[candidate("i\x00")]),
        INVALID)
    add("10k-char item id", *rk, lambda s: rank_request(s, candidates=[candidate(LONG_ID)]),
        INVALID)
    for v in (math.nan, math.inf, -math.inf, 3e38):
        add(f"scores={v}", *rk, lambda s, v=v: rank_with(s, set_scores(v)), OK, n_items(10))
    add("unknown generator ignored", *rk, lambda s: rank_request(
        s, candidates=[candidate("i1", generator="nope"), candidate("i2")]), OK)
    add("negative source ranks", *rk, lambda s: rank_with(
        s, lambda r: r.candidates.generator_ranks.__setitem__(0, INT32_MIN)), INVALID)
    add("huge source ranks", *rk, lambda s: rank_with(
        s, lambda r: r.candidates.generator_ranks.__setitem__(
            slice(None), [INT32_MAX] * len(r.candidates.generator_ranks))), OK)
    for lam in (2.0, -0.1, math.nan, math.inf):
        add(f"mmr_lambda={lam}", *rk, lambda s, lam=lam: rank_request(s, mmr_lambda=lam),
            INVALID)
    for lam in (0.0, 1.0):
        add(f"mmr_lambda={lam}", *rk, lambda s, lam=lam: rank_request(s, mmr_lambda=lam), OK,
            n_items(10))
    add("version not loaded", *rk, lambda s: rank_request(s, version="nope"),
        C.FAILED_PRECONDITION)
    add("empty version: the current one", *rk, lambda s: rank_request(s, version=""), OK)
    add("unknown or malformed recent items are ignored", *rk,
        lambda s: rank_with(s, set_user(recent_item_ids=["nope", "🎬", "", "\x00", LONG_ID])),
        OK, n_items(10))
    add("100k recent items", *rk,
        lambda s: rank_with(s, set_user(recent_item_ids=["i1"] * 100_000)), INVALID)
    for h in (-1, -5, INT32_MIN):
        add(f"history_length={h}", *rk, lambda s, h=h: rank_with(s, set_user(history_length=h)),
            INVALID)
    add("history_length=max", *rk,
        lambda s: rank_with(s, set_user(history_length=INT32_MAX)), OK)
    for ts in (INT64_MIN, -1, INT64_MAX):
        add(f"last_timestamp={ts}", *rk,
            lambda s, ts=ts: rank_with(s, set_user(last_timestamp=ts)), OK)
    add("empty user", *rk, lambda s: rank_with(s, set_user(user_id="")), OK)
    add("a real candidate renamed to an unknown id", *rk,
        lambda s: rank_with(s, rename_first("bad-rank-3")), OK, n_items(10))
    return t


TABLE = rows()


@pytest.mark.parametrize("case", [
    pytest.param(r, id=f"{r[1]}.{r[2]}: {r[0]}",
                 marks=[pytest.mark.xfail(strict=True, reason=r[6])] if r[6] else [])
    for r in TABLE])
def test_table(stubs, case):
    _name, stub, rpc, build, expected, check, _known_bug = case
    expected = expected if isinstance(expected, set | tuple) else {expected}
    code, resp, details = call(getattr(getattr(stubs, stub), rpc), build(stubs))
    assert code in expected, f"{code.name}: {details}"
    if check is not None:
        assert check(resp)


def test_servers_still_serve_after_the_table(stubs):
    assert_serving(stubs)


# -- Hypothesis ---------------------------------------------------------------------------

KNOWN_USERS = [f"u{i}" for i in range(150)]
KNOWN_ITEMS = [f"i{i}" for i in range(240)]
ODD = ["", "\x00", "a\x00b", " ", "\n", "..", "/", "\\", LONG_ID, "x" * 257, "\u3300" * 100,
       "e\u0301" * 300, *UNICODE_IDS]

# Every field is well-formed more often than not, so that many requests get past validation
# into the domain code with odd but valid values; the rest are malformed in one of many ways.
plain = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                min_size=1, max_size=24)
huge = st.builds(lambda ch, n: ch * n, st.characters(blacklist_categories=("Cs",)),
                 st.integers(200, 25_000))
texts = st.one_of(plain, plain, st.text(max_size=24), st.sampled_from(ODD), huge)
user_ids = st.one_of(st.sampled_from(KNOWN_USERS), plain, texts)
item_ids = st.one_of(st.sampled_from(KNOWN_ITEMS), st.sampled_from(KNOWN_ITEMS), plain, texts)
int32s = st.one_of(st.integers(0, 120), st.integers(-3, 1100), st.integers(INT32_MIN, INT32_MAX),
                   st.sampled_from([0, INT32_MAX, INT32_MIN]))
int64s = st.one_of(st.just(0), st.integers(1_500_000_000, 1_800_000_000),
                   st.integers(INT64_MIN, INT64_MAX), st.sampled_from([-1, INT64_MAX, INT64_MIN]))
# Bounded, so that Hypothesis never has to reject a float64 that overflows float32.
floats = st.one_of(st.floats(-(2.0**127), 2.0**127, width=32),
                   st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 3.4e38, 1e-45]))
id_lists = st.one_of(
    st.just([]),
    st.lists(item_ids, max_size=6),
    st.builds(lambda n: [f"i{j % 300}" for j in range(n)], st.integers(0, 3000)),
)
category_lists = st.one_of(
    st.just([]),
    st.lists(st.one_of(st.sampled_from(GENRES), texts), max_size=6),
    st.builds(lambda n: ["Drama"] * n, st.integers(0, 3000)),
)
filters = st.one_of(
    st.builds(common_pb2.Filters),
    st.builds(common_pb2.Filters, exclude_item_ids=id_lists),
    st.builds(common_pb2.Filters, include_categories=category_lists,
              exclude_categories=category_lists),
)

# SHORTLIST_FUZZ_EXAMPLES raises the example count for a longer hunt (40 keeps CI under 60 s).
FUZZ = settings(
    max_examples=int(os.environ.get("SHORTLIST_FUZZ_EXAMPLES", "40")), deadline=None,
    # ``fuzzed`` is function-scoped on purpose: it checks the servers once per test.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example, HealthCheck.function_scoped_fixture])


def assert_no_crash(method, request) -> grpc.StatusCode:
    code, _resp, details = call(method, request)
    event(code.name)  # --hypothesis-show-statistics: how many examples got past validation
    assert code not in CRASH, f"{code.name}: {details}"
    return code


def not_a_known_item(item_id: str) -> str:
    """UpsertItem may add items, but must not rewrite the catalog the other tests rely on."""
    return f"hyp-{item_id}" if item_id in KNOWN_ITEMS else item_id


@pytest.fixture
def fuzzed(stubs):
    """The stubs, checked to still serve after each Hypothesis test (all its examples)."""
    yield stubs
    assert_serving(stubs)


@FUZZ
@given(user_id=user_ids, k=int32s, flt=filters, recent=id_lists, debug=st.booleans())
def test_fuzz_gateway_recommend(fuzzed, user_id, k, flt, recent, debug):
    assert_no_crash(fuzzed.gateway.Recommend, gateway_pb2.RecommendRequest(
        user_id=user_id, k=k, filters=flt, recent_item_ids=recent, debug=debug))


@FUZZ
@given(user_id=user_ids, flt=filters, recent=id_lists, max_candidates=int32s,
       request_id=texts)
def test_fuzz_retrieval_retrieve(fuzzed, user_id, flt, recent, max_candidates, request_id):
    assert_no_crash(fuzzed.retrieval.Retrieve, retrieval_pb2.RetrieveRequest(
        user_id=user_id, filters=flt, recent_item_ids=recent, max_candidates=max_candidates,
        request_id=request_id))


@pytest.mark.parametrize("via", ["gateway", "retrieval"])
@FUZZ
@given(item_id=item_ids, k=int32s, request_id=texts)
def test_fuzz_similar_items(fuzzed, via, item_id, k, request_id):
    assert_no_crash(getattr(fuzzed, via).SimilarItems, retrieval_pb2.SimilarItemsRequest(
        item_id=item_id, k=k, request_id=request_id))


@pytest.mark.parametrize("via", ["gateway", "retrieval"])
@FUZZ
@given(user_id=user_ids, item_id=item_ids,
       weight=st.one_of(st.just(0.0), st.floats(-5, 5, width=32), floats), timestamp=int64s)
def test_fuzz_record_interaction(fuzzed, via, user_id, item_id, weight, timestamp):
    assert_no_crash(getattr(fuzzed, via).RecordInteraction,
                    retrieval_pb2.RecordInteractionRequest(
                        user_id=f"hyp-{user_id}" if user_id in KNOWN_USERS else user_id,
                        item_id=item_id, weight=weight, timestamp=timestamp))


@pytest.mark.parametrize("via", ["gateway", "retrieval"])
@FUZZ
@given(item_id=item_ids, title=texts, categories=category_lists, text=texts)
def test_fuzz_upsert_item(fuzzed, via, item_id, title, categories, text):
    assert_no_crash(getattr(fuzzed, via).UpsertItem, retrieval_pb2.UpsertItemRequest(
        item_id=not_a_known_item(item_id), title=title, categories=categories, text=text))


@pytest.mark.parametrize("via", ["gateway", "retrieval"])
@FUZZ
@given(query=st.one_of(texts, st.sampled_from(["space robot", "hauntd", "Drama Story 5"])),
       k=int32s)
def test_fuzz_search_items(fuzzed, via, query, k):
    assert_no_crash(getattr(fuzzed, via).SearchItems,
                    retrieval_pb2.SearchItemsRequest(query=query, k=k))


@pytest.mark.parametrize("via", ["gateway", "retrieval_admin", "ranking_admin"])
@FUZZ
@given(version=texts)
def test_fuzz_set_version(fuzzed, via, version):
    admin = getattr(fuzzed, via)
    try:
        assert_no_crash(admin.SetVersion, admin_pb2.SetVersionRequest(version=version))
        assert_no_crash(admin.ListVersions, admin_pb2.ListVersionsRequest())
    finally:
        fuzzed.gateway.SetVersion(admin_pb2.SetVersionRequest(version=""), timeout=TIMEOUT_S)


@FUZZ
@given(user_id=user_ids, item_id=st.one_of(st.just(""), item_ids), k=int32s, flt=filters,
       recent=id_lists, variant=st.one_of(st.just(""), texts))
def test_fuzz_explain(fuzzed, user_id, item_id, k, flt, recent, variant):
    assert_no_crash(fuzzed.gateway.Explain, gateway_pb2.ExplainRequest(
        user_id=user_id, item_id=item_id, k=k, filters=flt, recent_item_ids=recent,
        variant=variant))


# Targets that fail the checks (a list of names, half a pair) or are never dialled: a
# version check against a server that is not there would only wait for its deadline.
variants = st.builds(
    experiment_pb2.Variant, name=st.one_of(st.sampled_from(["a", "b", "c"]), texts),
    share=st.one_of(st.floats(0, 10), st.floats(allow_nan=True, allow_infinity=True)),
    order=st.one_of(st.sampled_from(["", "ranker", "retrieval", "generator:als",
                                     "generator:nope"]), texts),
    mmr_lambda=st.one_of(st.floats(0, 1), floats), candidates=int32s,
    version=st.one_of(st.just(""), st.sampled_from(["current", "v-other"]), texts),
    retrieval_target=st.sampled_from(["", "", "", "a:1,b:2", "127.0.0.1:1"]),
    mode=st.sampled_from([0, 0, 1, 7]), arms=st.lists(st.sampled_from(["a", "b", "x"]),
                                                       max_size=3))


@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@FUZZ
@given(name=st.one_of(st.just("exp"), texts), salt=texts,
       chosen=st.lists(variants, max_size=4), shadow=st.one_of(st.none(), variants),
       fraction=st.one_of(st.just(0.0), floats), user_id=user_ids)
def test_fuzz_set_experiment(fuzzed, name, salt, chosen, shadow, fraction, user_id):
    for v in chosen:
        if v.version == "current":
            v.version = fuzzed.version
        if v.retrieval_target:  # never dialled: it fails a check first
            v.version = ""
    msg = experiment_pb2.Experiment(name=name, salt=salt, variants=chosen,
                                    shadow_fraction=fraction)
    if shadow is not None:
        shadow.version = ""
        msg.shadow.CopyFrom(shadow)
    try:
        code = assert_no_crash(fuzzed.gateway.SetExperiment,
                               experiment_pb2.SetExperimentRequest(experiment=msg))
        if code == C.OK:  # whatever was accepted serves, or says why not
            assert_no_crash(fuzzed.gateway.Recommend,
                            gateway_pb2.RecommendRequest(user_id=user_id, k=5))
    finally:
        fuzzed.gateway.SetExperiment(experiment_pb2.SetExperimentRequest(), timeout=TIMEOUT_S)


small_texts = st.one_of(plain, st.sampled_from(ODD[:8]), st.text(max_size=8))
generator_scores = st.tuples(
    st.one_of(st.sampled_from(["als", "content", "trending"]), small_texts), floats, int32s)
candidates = st.builds(
    Cand,
    item=st.builds(common_pb2.Item, item_id=st.one_of(item_ids, plain), title=small_texts,
                   categories=st.lists(st.one_of(st.sampled_from(GENRES), small_texts),
                                       max_size=4)),
    sources=st.lists(generator_scores, max_size=4).map(tuple),
    retrieval_score=floats, affinity=floats)
raw_columns = st.builds(
    retrieval_pb2.CandidateColumns, item_ids=st.lists(st.one_of(item_ids, plain), max_size=8),
    retrieval_scores=st.lists(floats, max_size=8),
    generator_affinities=st.lists(floats, max_size=24),
    generators=st.lists(st.one_of(st.sampled_from(["als", "content"]), small_texts),
                        max_size=3),
    generator_scores=st.lists(floats, max_size=24), generator_ranks=st.lists(int32s, max_size=24))
user_contexts = st.builds(
    retrieval_pb2.UserContext, user_id=user_ids,
    history_length=st.one_of(st.integers(0, 50), int32s), recent_item_ids=id_lists,
    segment=st.integers(0, 6), last_timestamp=int64s)


@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@FUZZ
@given(data=st.data(), k=int32s, lam=st.one_of(st.none(), floats, st.floats(0, 1)),
       version=st.sampled_from(["", "current", "current", "other"]))
def test_fuzz_rank(fuzzed, data, k, lam, version):
    base = fuzzed.rank_base
    mode = data.draw(st.sampled_from(["real", "mixed", "random", "raw"]), label="candidates")
    cols, items = base.candidates, list(base.items)
    if mode == "raw":
        cols = data.draw(raw_columns, label="columns")
    elif mode != "real":
        drawn = data.draw(st.lists(candidates, max_size=30), label="drawn")
        real = [Cand(common_pb2.Item(item_id=i)) for i in list(base.candidates.item_ids)[:20]]
        cols, items = to_columns(drawn if mode == "random" else real + drawn)
    user = base.user if data.draw(st.booleans(), label="real user") else data.draw(
        user_contexts, label="user")
    if version == "current":
        version = base.version
    elif version == "other":
        version = data.draw(texts, label="version")
    req = ranking_pb2.RankRequest(user=user, candidates=cols, items=items, k=k, version=version)
    if lam is not None:
        req.mmr_lambda = lam
    assert_no_crash(fuzzed.ranking.Rank, req)


def test_servers_still_serve_after_fuzzing(stubs):
    assert_serving(stubs)
    listed = stubs.gateway.ListVersions(admin_pb2.ListVersionsRequest(), timeout=TIMEOUT_S)
    assert listed.serving == stubs.version and not listed.pinned
