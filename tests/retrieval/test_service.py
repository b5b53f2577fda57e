"""RetrievalService over the trained synthetic artifact, served by the real retrieval server
(``create_server``) on a free port with its own event log.

Checks the protobuf <-> domain translation of every RPC, the status and message of each kind
of refusal, and the one log line the edge writes per request with the service's fields.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from shortlist.common import edge
from shortlist.retrieval import server as retrieval_server
from shortlist.retrieval.errors import NotReady
from shortlist.retrieval.eventlog import EventLog
from shortlist.retrieval.online import RetrievalState
from shortlist.retrieval.server import create_server
from shortlist.retrieval.service import MAX_RUN_LENGTH, RetrievalService
from shortlist.retrieval.settings import RetrievalSettings
from shortlist.v1 import common_pb2, retrieval_pb2, retrieval_pb2_grpc

C = grpc.StatusCode
R = retrieval_pb2


@dataclass
class Served:
    stub: retrieval_pb2_grpc.RetrievalStub
    settings: RetrievalSettings
    state: RetrievalState  # the server's own, to read what a write did to the user

    def refused(self, method: str, request) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as err:
            getattr(self.stub, method)(request, timeout=10)
        return err.value


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("retrieval-service")
    settings = RetrievalSettings(address="127.0.0.1:0", artifacts=trained,
                                 event_log=tmp / "events.db")
    opened: list[RetrievalState] = []
    with pytest.MonkeyPatch.context() as mp:  # keep a handle on the state the server opens
        mp.setattr(retrieval_server, "open_state",
                   lambda s, real=retrieval_server.open_state: opened.append(real(s))
                   or opened[-1])
        server, port = create_server(settings)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield Served(retrieval_pb2_grpc.RetrievalStub(channel), settings, opened[0])
    channel.close()
    server.stop(0)


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger=edge.__name__)
    return lambda: [r.fields for r in caplog.records
                    if r.name == edge.__name__ and r.fields.get("server") == "retrieval"]


def test_retrieve(served, lines):
    resp = served.stub.Retrieve(R.RetrieveRequest(user_id="u5", k=5, request_id="rid-r1"),
                                timeout=10)
    cols = resp.candidates
    n = len(cols.item_ids)
    assert n > 5 and len(set(cols.item_ids)) == n and len(cols.retrieval_scores) == n
    assert len(cols.generator_ranks) == n * len(cols.generators)
    assert resp.user.user_id == "u5" and resp.user.history_length > 0
    assert resp.user.segment == common_pb2.USER_SEGMENT_ESTABLISHED
    assert resp.version
    described = [it.item_id for it in resp.items]
    assert described[:5] == list(cols.item_ids[:5]) and all(it.title for it in resp.items)
    assert {"total", "merge"} <= set(resp.timings_ms)
    [line] = lines()
    assert (line["rpc"], line["code"], line["request_id"]) == ("Retrieve", "OK", "rid-r1")
    assert line["user_id"] == "u5" and line["candidates"] == n
    assert line["segment"] == "established" and line["version"] == resp.version


def test_retrieve_applies_filters(served):
    resp = served.stub.Retrieve(R.RetrieveRequest(
        user_id="u5", filters=common_pb2.Filters(include_categories=["SciFi"])), timeout=10)
    assert resp.items and all(list(it.categories) == ["SciFi"] for it in resp.items)


@pytest.mark.parametrize(("request_", "message"), [
    (R.RetrieveRequest(user_id=""), "user_id is empty"),
    (R.RetrieveRequest(user_id="u" * 257), "user_id longer than 256 characters"),
    (R.RetrieveRequest(user_id="u5", recent_item_ids=["i1\x00"]),
     "recent_item_ids contains a NUL character"),
    (R.RetrieveRequest(user_id="u5", filters=common_pb2.Filters(exclude_item_ids=["i1"] * 1001)),
     "filters.exclude_item_ids has more than 1000 entries"),
    (R.RetrieveRequest(user_id="u5", filters=common_pb2.Filters(exclude_categories=[""])),
     "filters.exclude_categories is empty"),
    (R.RetrieveRequest(user_id="u5", k=1001), "k must be in [1, 1000], got 1001"),
])
def test_retrieve_refuses_malformed_requests(served, lines, request_, message):
    err = served.refused("Retrieve", request_)
    assert err.code() == C.INVALID_ARGUMENT and err.details() == message
    [line] = lines()
    assert line["code"] == "INVALID_ARGUMENT" and line["error"] == message


def test_similar_items(served, lines):
    resp = served.stub.SimilarItems(R.SimilarItemsRequest(item_id="i3", k=4), timeout=10)
    assert len(resp.items) == 4 and "i3" not in {s.item.item_id for s in resp.items}
    assert all(s.item.title for s in resp.items) and resp.version
    [line] = lines()
    assert line["item_id"] == "i3" and line["items"] == 4


def test_similar_items_of_an_unknown_item_is_not_found(served):
    err = served.refused("SimilarItems", R.SimilarItemsRequest(item_id="nope"))
    assert err.code() == C.NOT_FOUND and err.details() == "unknown item_id 'nope'"


def test_record_interaction_is_durable_and_counted(served, lines):
    resp = served.stub.RecordInteraction(R.RecordInteractionRequest(
        user_id="svc-user-1", item_id="i4", weight=2.0, timestamp=1_650_000_000), timeout=10)
    assert resp.sequence > 0 and resp.history_length == 1
    with EventLog(Path(served.settings.event_log)) as log:
        [rec] = [r for r in log.interactions() if r.user_id == "svc-user-1"]
    assert (rec.item_id, rec.weight, rec.timestamp, rec.seq) == ("i4", 2.0, 1_650_000_000,
                                                                 resp.sequence)
    [line] = lines()
    assert (line["user_id"], line["item_id"], line["code"]) == ("svc-user-1", "i4", "OK")


@pytest.mark.parametrize(("request_", "code", "message"), [
    (R.RecordInteractionRequest(user_id="svc-user-2", item_id="nope"), C.NOT_FOUND,
     "unknown item_id 'nope'"),
    (R.RecordInteractionRequest(user_id="svc-user-2", item_id="i4", weight=math.nan),
     C.INVALID_ARGUMENT, "weight must be finite and at most 1e6, got nan"),
    (R.RecordInteractionRequest(user_id="svc-user-2", item_id="i4", timestamp=-1),
     C.INVALID_ARGUMENT, "timestamp must be in [0, now + 86400s], got -1"),
    (R.RecordInteractionRequest(user_id="svc-user-2", item_id=""), C.INVALID_ARGUMENT,
     "item_id is empty"),
])
def test_record_interaction_refusals(served, request_, code, message):
    err = served.refused("RecordInteraction", request_)
    assert err.code() == code and err.details() == message


def test_a_dislike_is_logged_typed_and_pushes_the_user_away(served, lines):
    resp = served.stub.RecordInteraction(R.RecordInteractionRequest(
        user_id="svc-typed-1", item_id="i4", weight=1.5, timestamp=1_650_000_000,
        event="Dislike"), timeout=10)
    assert resp.history_length == 1
    with EventLog(Path(served.settings.event_log)) as log:
        [rec] = [r for r in log.interactions() if r.user_id == "svc-typed-1"]
    assert (rec.item_id, rec.weight, rec.event, rec.seq) == ("i4", 1.5, "dislike",
                                                             resp.sequence)
    m = served.state.retriever.models
    items, _, weights = m.history.events(m.users.index("svc-typed-1"))
    assert m.catalog.vocab.id(int(items[0])) == "i4"
    assert weights.tolist() == [1.5 * m.event_types.weight("dislike")] and weights[0] < 0
    [line] = lines()
    assert (line["event_type"], line["code"]) == ("Dislike", "OK")
    got = served.stub.Retrieve(R.RetrieveRequest(user_id="svc-typed-1", k=20), timeout=10)
    assert "i4" not in got.candidates.item_ids  # a disliked item is never recommended back


@pytest.mark.parametrize(("event", "message"), [
    ("teleport", "unknown event type 'teleport'; this model knows: "),
    ("no spaces", "event type 'no spaces' is not a name"),
    ("x" * 10_000, "is not a name"),
])
def test_an_unknown_event_type_is_invalid_argument_and_not_logged(served, lines, event,
                                                                  message):
    with EventLog(Path(served.settings.event_log)) as log:
        before = log.last_seq("interactions")
    err = served.refused("RecordInteraction", R.RecordInteractionRequest(
        user_id="svc-typed-2", item_id="i4", event=event))
    assert err.code() == C.INVALID_ARGUMENT and message in err.details()
    known = served.state.retriever.models.event_types.names
    assert all(name in err.details() for name in known)  # what to send instead
    assert len(err.details()) < 500
    with EventLog(Path(served.settings.event_log)) as log:
        assert log.last_seq("interactions") == before
    assert served.state.retriever.history_length("svc-typed-2") == 0
    [line] = lines()
    assert line["code"] == "INVALID_ARGUMENT"


def test_upsert_item_creates_then_updates(served):
    request = R.UpsertItemRequest(item_id="svc-new-1", title="Haunted Robot Night",
                                  categories=["Horror"], text="ghost robot")
    assert served.stub.UpsertItem(request, timeout=10).created
    again = served.stub.UpsertItem(request, timeout=10)
    assert not again.created and again.sequence > 0
    found = served.stub.SearchItems(R.SearchItemsRequest(query="haunted robot night", k=3),
                                    timeout=10)
    assert "svc-new-1" in {s.item.item_id for s in found.items}


@pytest.mark.parametrize(("request_", "message"), [
    (R.UpsertItemRequest(item_id="svc-new-2", title=" \t"), "title is empty"),
    (R.UpsertItemRequest(item_id="svc-new-2", title="T", text="t" * 20_001),
     "text longer than 20000 characters"),
    (R.UpsertItemRequest(item_id="svc-new-2", title="a" * (MAX_RUN_LENGTH + 1)),
     f"title has a word or a whitespace run longer than {MAX_RUN_LENGTH} characters"),
    (R.UpsertItemRequest(item_id="svc-new-2", title="T", categories=["\u3300" * 100]),
     f"categories has a word or a whitespace run longer than {MAX_RUN_LENGTH} characters"),
    (R.UpsertItemRequest(item_id="svc-new-2", title="T", categories=[""]),
     "categories is empty"),
])
def test_upsert_item_refusals(served, request_, message):
    err = served.refused("UpsertItem", request_)
    assert err.code() == C.INVALID_ARGUMENT and err.details() == message


def test_search_items(served, lines):
    resp = served.stub.SearchItems(R.SearchItemsRequest(query="spcae robto", k=5), timeout=10)
    assert resp.items and resp.fuzzy and resp.version
    assert all("SciFi" in s.item.categories for s in resp.items)
    assert lines()[0]["query"] == "spcae robto"


@pytest.mark.parametrize(("query", "message"), [
    ("", "query is empty"), (" ", "query is empty"),
    ("q" * 513, "query longer than 512 characters"), ("a\x00", "query contains a NUL character"),
])
def test_search_items_refusals(served, query, message):
    err = served.refused("SearchItems", R.SearchItemsRequest(query=query))
    assert err.code() == C.INVALID_ARGUMENT and err.details() == message


def test_before_a_version_is_loaded_calls_are_not_ready(tmp_path):
    """Called directly (no server): the service raises the typed error the edge maps to
    UNAVAILABLE, after the request itself was checked."""
    with EventLog(tmp_path / "events.db") as log:
        service = RetrievalService(RetrievalSettings(), RetrievalState(log))
        with pytest.raises(NotReady) as err:
            service.Retrieve(R.RetrieveRequest(user_id="u1"), None)
        assert err.value.status == "UNAVAILABLE"
        with pytest.raises(NotReady):
            service.RecordInteraction(R.RecordInteractionRequest(user_id="u", item_id="i"),
                                      None)
