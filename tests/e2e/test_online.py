"""Online behaviour with real server processes: feedback, upserts, search, replay, versions."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time

import grpc
import pytest

from shortlist.clients import cli
from shortlist.common.artifacts import list_versions, new_version, read_manifest
from shortlist.common.stack import Stack
from shortlist.v1 import (
    admin_pb2,
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    retrieval_pb2,
)
from tests.conftest import GENRES, publish_copy

pytestmark = pytest.mark.e2e
FAST_RELOAD = {"SHORTLIST_RETRIEVAL_RELOAD_INTERVAL_S": "0.3",
               "SHORTLIST_RANKING_RELOAD_INTERVAL_S": "0.2"}


@pytest.fixture(scope="module")
def root(trained, tmp_path_factory):
    """This module's own artifact root (it publishes and pins versions in it), holding the
    session's fitted version."""
    out = tmp_path_factory.mktemp("online-artifacts")
    publish_copy(list_versions(trained)[-1], out)
    return out


@pytest.fixture(scope="module")
def stack(root, tmp_path_factory):
    """This module's own stack, not the session's shared one: its tests record interactions,
    upsert items, kill retrieval and swap versions."""
    s = Stack.on_free_ports(root, log_dir=tmp_path_factory.mktemp("logs"),
                            state_dir=tmp_path_factory.mktemp("state"), env=FAST_RELOAD)
    with s:
        yield s


@pytest.fixture(scope="module")
def stub(stack):
    with grpc.insecure_channel(stack.address("gateway")) as channel:
        yield gateway_pb2_grpc.GatewayStub(channel)


def recommend(stub, user, k=10, **kw):
    return stub.Recommend(gateway_pb2.RecommendRequest(user_id=user, k=k, **kw), timeout=5)


def genre(item_id: str) -> str:
    return GENRES[int(item_id[1:]) % len(GENRES)]


def test_feedback_removes_the_item_and_shifts_taste(stub):
    user = "u0"  # prefers Action
    before = recommend(stub, user, k=20)
    top = before.items[0].item_id
    stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(user_id=user, item_id=top),
                           timeout=5)
    after = recommend(stub, user, k=20)
    assert top not in {i.item_id for i in after.items}
    horror_before = sum(genre(i.item_id) == "Horror" for i in after.items)
    # three Horror picks in a row: the next list leans toward Horror
    for item in ("i3", "i9", "i15"):
        resp = stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
            user_id=user, item_id=item, weight=1.0), timeout=5)
        assert resp.sequence > 0
    shifted = recommend(stub, user, k=20)
    horror_after = sum(genre(i.item_id) == "Horror" for i in shifted.items)
    assert horror_after > horror_before
    assert not {"i3", "i9", "i15", top} & {i.item_id for i in shifted.items}


def test_a_dislike_through_the_cli_removes_the_item_and_lowers_similar_items(stack, stub,
                                                                            capsys):
    # Twins: two new users with the same history (Action mostly, some Comedy). One of them
    # then dislikes a Comedy item through the CLI; the other does nothing.
    history = ["i0", "i6", "i12", "i18", "i24", "i1", "i7", "i13"]
    for user in ("twin-dislikes", "twin-control"):
        for item in history:
            stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
                user_id=user, item_id=item), timeout=5)
    k = 60
    before = [i.item_id for i in recommend(stub, "twin-dislikes", k=k).items]
    assert before == [i.item_id for i in recommend(stub, "twin-control", k=k).items]
    disliked = next(i for i in before if genre(i) == "Comedy")
    target = ["--target", stack.address("gateway")]
    assert cli.main([*target, "--json", "feedback", "--user", "twin-dislikes", "--item",
                     disliked, "--event", "dislike"]) == 0
    assert json.loads(capsys.readouterr().out)["event"] == "dislike"
    after = {i.item_id: i.score for i in recommend(stub, "twin-dislikes", k=k).items}
    control = {i.item_id: i.score for i in recommend(stub, "twin-control", k=k).items}
    assert disliked not in after and disliked in control
    # The ranker's score of each item both are shown: Comedy items (like the disliked one)
    # lose, on average, against the rest. Positions alone would not show it: the diversity
    # stage keeps some Comedy in the list on purpose.
    both = [i for i in control if i in after]
    comedy = [after[i] - control[i] for i in both if genre(i) == "Comedy"]
    others = [after[i] - control[i] for i in both if genre(i) != "Comedy"]
    assert comedy and others
    assert sum(comedy) / len(comedy) < sum(others) / len(others)


def test_feedback_makes_a_new_user_known(stub):
    first = recommend(stub, "brand-new-42")
    assert first.segment == common_pb2.USER_SEGMENT_NEW
    resp = stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
        user_id="brand-new-42", item_id="i5"), timeout=5)
    assert resp.history_length == 1
    after = recommend(stub, "brand-new-42")
    assert after.segment == common_pb2.USER_SEGMENT_LIGHT
    assert "i5" not in {i.item_id for i in after.items}


def test_feedback_on_an_unknown_item_is_not_found(stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
            user_id="u1", item_id="no-such-item"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_upserted_item_is_similar_searchable_and_recommendable(stub):
    resp = stub.UpsertItem(retrieval_pb2.UpsertItemRequest(
        item_id="new-scifi", title="Robot Space Odyssey", categories=["SciFi"],
        text="space robot future alien"), timeout=5)
    assert resp.created
    similar = stub.SimilarItems(retrieval_pb2.SimilarItemsRequest(item_id="i5", k=10),
                                timeout=5)
    assert "new-scifi" in {s.item.item_id for s in similar.items}
    found = stub.SearchItems(retrieval_pb2.SearchItemsRequest(query="robot odyssey", k=3),
                             timeout=5)
    assert found.items[0].item.item_id == "new-scifi"
    # u5 prefers SciFi: the new item is among their SciFi recommendations, ranked
    recs = recommend(stub, "u5", k=50,
                     filters=common_pb2.Filters(include_categories=["SciFi"]))
    assert not recs.degraded
    assert "new-scifi" in {i.item_id for i in recs.items}


def test_search_tolerates_typos(stub):
    resp = stub.SearchItems(retrieval_pb2.SearchItemsRequest(query="Horor Stroy 9", k=5),
                            timeout=5)
    assert resp.fuzzy
    assert resp.items[0].item.item_id == "i9"
    with pytest.raises(grpc.RpcError) as err:
        stub.SearchItems(retrieval_pb2.SearchItemsRequest(query="   ", k=5), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cli_online_commands(stack, capsys):
    target = ["--target", stack.address("gateway")]
    assert cli.main([*target, "--json", "feedback", "--user", "u7", "--item", "i2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["user_id"] == "u7" and out["sequence"] > 0
    assert cli.main([*target, "--json", "upsert-item", "--item", "cli-item", "--title",
                     "Laugh Party Night", "--category", "Comedy", "--text", "funny"]) == 0
    assert json.loads(capsys.readouterr().out)["created"] is True
    assert cli.main([*target, "--json", "search", "laugh party"]) == 0
    assert json.loads(capsys.readouterr().out)["items"][0]["item_id"] == "cli-item"
    assert cli.main([*target, "--json", "versions"]) == 0
    assert json.loads(capsys.readouterr().out)["serving"]


def test_acknowledged_events_survive_kill_9(stack, stub):
    user = "replay-user"
    items = ["i1", "i7", "i13", "i19", "i25", "i31"]
    for n, item in enumerate(items, 1):
        resp = stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
            user_id=user, item_id=item), timeout=5)
        assert resp.history_length == n
    stack.stop_one("retrieval", sig=signal.SIGKILL)
    stack.start_one("retrieval")
    # The gateway fails fast until its channel has reconnected (backoff up to 1 s) and seen
    # the new process's health: a client retries, as this read does, before writing again.
    deadline = time.monotonic() + 10
    while True:
        try:
            recommend(stub, user)
            break
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    resp = stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
        user_id=user, item_id="i37"), timeout=5)
    assert resp.history_length == len(items) + 1
    recs = recommend(stub, user, k=30)
    assert recs.segment == common_pb2.USER_SEGMENT_ESTABLISHED
    assert not set(items) & {i.item_id for i in recs.items}
    upserted = stub.SimilarItems(retrieval_pb2.SimilarItemsRequest(item_id="i5", k=10),
                                 timeout=5)
    assert "new-scifi" in {s.item.item_id for s in upserted.items}  # upserts replay too


def test_new_version_under_load_and_rollback(stack, stub, root, capsys):
    old = stub.ListVersions(admin_pb2.ListVersionsRequest(), timeout=5).serving
    errors, versions, degraded, stop = [], set(), [0], threading.Event()

    def load():
        with grpc.insecure_channel(stack.address("gateway")) as ch:
            s = gateway_pb2_grpc.GatewayStub(ch)
            n = 0
            while not stop.is_set() and n < 5000:
                n += 1
                try:
                    r = s.Recommend(gateway_pb2.RecommendRequest(user_id=f"u{n % 150}", k=10),
                                    timeout=5)
                    versions.add(r.version)
                    degraded[0] += r.degraded
                    assert len(r.items) == 10
                except grpc.RpcError as exc:
                    errors.append(exc.code())

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    time.sleep(1.1)  # version names have one-second resolution
    # a new version to swap to: the same models, published again under a newer name (what
    # is tested is the swap under load, not the fit)
    current = read_manifest(root / old)
    new = publish_copy(root / old, root,
                       new_version(current.data["dataset"]["fingerprint"])).name
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if recommend(stub, "u1").version == new:
            break
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert versions == {old, new}
    assert recommend(stub, "u1").version == new

    # a corrupt newer version is refused; the good one keeps serving
    bad = root / (new[:-1] + "z")
    shutil.copytree(root / new, bad)
    (bad / "ranking" / "ranker.txt").write_text("corrupt")
    time.sleep(1.5)
    assert recommend(stub, "u1").version == new
    shutil.rmtree(bad)

    # rollback is one command; --latest follows the newest again
    target = ["--target", stack.address("gateway"), "--json"]
    assert cli.main([*target, "rollback"]) == 0
    assert json.loads(capsys.readouterr().out)["serving"] == old
    assert recommend(stub, "u1").version == old
    assert cli.main([*target, "rollback", "--latest"]) == 0
    assert json.loads(capsys.readouterr().out)["serving"] == new
    assert [p.name for p in list_versions(root)] == [old, new]
