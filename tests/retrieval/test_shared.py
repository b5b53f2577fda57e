"""The shared (redis) state backend on a real ``redis-server``: two states on one stream are
two replicas in one process; the server tests run them as processes (tests/e2e/test_replicas.py).

Waits are bounded loops on observable state; no test asserts a timing.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shortlist.common import artifacts
from shortlist.common.eventid import StreamId
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.retrieval.errors import (
    InvalidEventType,
    InvalidRequest,
    ItemNotFound,
    Lagging,
    StateUnavailable,
)
from shortlist.retrieval.eventlog import Interaction, ItemRecord, interaction_entry, item_entry
from shortlist.retrieval.retriever import RetrieveQuery, Retriever
from shortlist.retrieval.shared import SharedState
from shortlist.retrieval.stream import StreamError, StreamLog

T0 = 1_700_000_000
WAIT_S = 60


def replica(root: Path, url: str, wait_s: float = 5.0) -> SharedState:
    """A state serving the session's artifact, caught up on the stream at ``url``."""
    version_dir = artifacts.resolve(root)
    manifest = artifacts.read_manifest(version_dir)
    state = SharedState(StreamLog(url, timeout_s=0.5), consistency_wait_s=wait_s)
    retriever = Retriever(RetrievalModels.load(version_dir), manifest.version, 2000)
    state.swap(state.prepare(retriever, manifest.data.get("events")))
    return state


def history(state: SharedState, user: str) -> list[str]:
    m = state.retriever.models
    u = m.users.index(user)
    return [] if u < 0 else [m.catalog.vocab.id(i) for i in m.history.events(u)[0]]


def until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@given(st.tuples(st.integers(0, 2**40), st.integers(0, 2**20)),
       st.tuples(st.integers(0, 2**40), st.integers(0, 2**20)))
def test_stream_ids_order_as_redis_orders_them(a, b):
    x, y = StreamId(*a), StreamId(*b)
    assert (x < y) == (a < b) and StreamId.parse(str(x)) == x


@pytest.mark.parametrize("bad", ["", "5", "a-1", "1-2-3", "-1-2", "1 -2", "9" * 21 + "-0"])
def test_a_malformed_stream_id_is_refused(bad):
    with pytest.raises(ValueError):
        StreamId.parse(bad)


def test_the_stream_keeps_what_it_was_given_and_appends_a_client_event_once(redis_server):
    log = StreamLog(redis_server.url)
    first, appended = log.append(interaction_entry("u1", "i3", 2.5, T0), "evt-1")
    assert appended
    again, appended = log.append(interaction_entry("u1", "i3", 2.5, T0), "evt-1")
    assert (again, appended) == (first, False)
    second, _ = log.append(item_entry("new", "Title ü", ["Drama", "SciFi"], "text"))
    records = list(log.entries())
    assert [str(i) for i, _ in records] == [first, second]
    inter, item = records[0][1], records[1][1]
    assert isinstance(inter, Interaction) and isinstance(item, ItemRecord)
    assert (inter.user_id, inter.item_id, inter.weight, inter.timestamp) == ("u1", "i3", 2.5, T0)
    assert (item.item_id, item.title, item.categories) == ("new", "Title ü", ["Drama", "SciFi"])
    assert log.last_id() == StreamId.parse(second)
    assert list(log.entries(StreamId.parse(first))) == records[1:]
    assert log.durability() == {"appendonly": "yes", "appendfsync": "always"}
    log.close()


def test_the_stream_keeps_an_event_type_and_reads_an_entry_without_one_as_untyped(
        redis_server):
    log = StreamLog(redis_server.url)
    typed, _ = log.append(interaction_entry("u1", "i3", 2.0, T0, event="dislike"))
    untyped, _ = log.append(interaction_entry("u1", "i4", 1.0, T0))
    # an entry as code from before event types wrote it: no "e" field at all
    legacy = log._redis.xadd(log.stream, {"t": "i", "u": "u2", "it": "i5", "w": "1.0",
                                          "ts": str(T0)})
    assert "e" not in log._redis.xrange(log.stream, untyped, untyped)[0][1]
    records = {str(i): r for i, r in log.entries()}
    assert records[typed].event == "dislike" and records[typed].weight == 2.0
    assert records[untyped].event == "" and records[legacy].event == ""
    assert records[legacy].user_id == "u2"
    log.close()


def test_a_typed_write_is_checked_normalised_and_weighed_on_every_replica(trained,
                                                                          redis_server):
    a, b = replica(trained, redis_server.url), replica(trained, redis_server.url)
    try:
        with pytest.raises(InvalidEventType, match="this model knows: .*dislike") as err:
            a.record_interaction("typed-user", "i3", 1.0, T0, event="teleport")
        assert err.value.status == "INVALID_ARGUMENT"
        assert list(a.log.entries()) == []  # refused before appending
        event_id, _, _ = a.record_interaction("typed-user", "i3", 2.0, T0, event="DisLike")
        [(_, record)] = list(a.log.entries())
        assert record.event == "dislike"
        b.wait_applied(event_id)
        dislike = b.retriever.models.event_types.weight("dislike")
        for state in (a, b):
            m = state.retriever.models
            _, _, weights = m.history.events(m.users.index("typed-user"))
            assert weights.tolist() == [2.0 * dislike] and dislike < 0
    finally:
        a.close()
        b.close()


def test_an_entry_of_a_type_the_version_lacks_is_skipped_not_fatal(trained, redis_server):
    log = StreamLog(redis_server.url)
    log.append(interaction_entry("skip-user", "i3", 1.0, T0, event="teleport"))
    log.append(interaction_entry("skip-user", "i4", 1.0, T0 + 1, event="like"))
    log.close()
    state = replica(trained, redis_server.url)  # replays both: one is skipped
    try:
        assert history(state, "skip-user") == ["i4"]
    finally:
        state.close()


def test_a_write_through_one_replica_is_read_through_the_other(trained, redis_server):
    a, b = replica(trained, redis_server.url), replica(trained, redis_server.url)
    try:
        event_id, n, duplicate = a.record_interaction("shared-user", "i3", 1.0, T0)
        assert (n, duplicate) == (1, False)
        assert history(a, "shared-user") == ["i3"]  # the writer applied it before answering
        b.wait_applied(event_id)
        assert history(b, "shared-user") == ["i3"]
        created_id, created = b.upsert_item("brand-new", "Brand New", ["Drama"], "new text")
        assert created
        a.wait_applied(created_id)
        assert "brand-new" in a.retriever.models.catalog.vocab
        # a retry with the same client event id is answered, not applied again, anywhere
        first = a.record_interaction("shared-user", "i4", 1.0, T0 + 1, "click-7")
        retry = b.record_interaction("shared-user", "i4", 1.0, T0 + 1, "click-7")
        assert retry[0] == first[0] and retry[2] is True
        a.wait_applied(retry[0])
        assert history(a, "shared-user") == history(b, "shared-user") == ["i3", "i4"]
    finally:
        a.close()
        b.close()


def test_bad_tokens_and_unknown_items_are_refused(trained, redis_server):
    state = replica(trained, redis_server.url, wait_s=0.05)
    try:
        with pytest.raises(InvalidRequest):
            state.wait_applied("not-a-token")
        with pytest.raises(Lagging) as err:  # an id nobody wrote: never applied here
            state.wait_applied(f"{time.time_ns()}-0")
        assert err.value.status == "UNAVAILABLE"
        with pytest.raises(ItemNotFound):
            state.record_interaction("u", "no-such-item", 1.0, T0)
        assert list(state.log.entries()) == []
    finally:
        state.close()


def test_redis_down_reads_serve_writes_fail_fast_and_it_catches_up_after(trained,
                                                                         redis_server):
    a, b = replica(trained, redis_server.url), replica(trained, redis_server.url)
    try:
        before, _, _ = a.record_interaction("down-user", "i1", 1.0, T0)
        b.wait_applied(before)
        redis_server.kill()
        until(lambda: not b.connected, "the tailer to notice")
        served = b.retriever.retrieve(RetrieveQuery(
            user_id="down-user", recent_item_ids=[], exclude_item_ids=[], include_categories=[],
            exclude_categories=[], max_candidates=50, k=10))
        assert len(served.candidates) > 0 and history(b, "down-user") == ["i1"]
        start = time.monotonic()
        with pytest.raises(StateUnavailable) as err:
            a.record_interaction("down-user", "i2", 1.0, T0 + 1)
        assert "not acknowledged" in str(err.value) and err.value.status == "UNAVAILABLE"
        assert time.monotonic() - start < WAIT_S  # bounded by the Redis timeout, not hung
        redis_server.start()
        after, _, _ = a.record_interaction("down-user", "i2", 1.0, T0 + 2)
        b.wait_applied(after)
        assert b.connected and history(b, "down-user") == ["i1", "i2"]
    finally:
        a.close()
        b.close()


def test_kill_9_of_redis_under_writers_loses_no_acknowledged_write(trained, redis_server):
    """Writers acknowledge as fast as they can while Redis is killed and restarted: every
    acknowledged event is on both replicas afterwards, once, in the stream's order."""
    a, b = replica(trained, redis_server.url), replica(trained, redis_server.url)
    acked: list[tuple[str, str]] = []
    failed = [0]
    stop = threading.Event()

    def writer(w: int) -> None:
        k = 0
        while not stop.is_set():
            user, item = f"kill-w{w}", f"i{k % 240}"
            try:
                event_id, _, _ = (a if k % 2 else b).record_interaction(user, item, 1.0,
                                                                        T0 + k, f"w{w}-{k}")
                acked.append((event_id, f"w{w}-{k}"))
            except StateUnavailable:
                failed[0] += 1
            k += 1

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(4)]
    try:
        for t in threads:
            t.start()
        until(lambda: len(acked) >= 100, "writes before the kill")
        redis_server.kill()
        until(lambda: failed[0] >= 4, "writes to fail while Redis is down")
        n_at_kill = len(acked)
        redis_server.start()  # replays its AOF
        until(lambda: len(acked) >= n_at_kill + 100, "writes after the restart")
        stop.set()
        for t in threads:
            t.join(WAIT_S)
        last = max(StreamId.parse(e) for e, _ in acked)
        for state in (a, b):
            state.wait_applied(str(last), timeout_s=WAIT_S)
        stream = {str(i) for i, _ in a.log.entries()}
        assert {e for e, _ in acked} <= stream, "an acknowledged write is missing"
        # each replica applied the stream (every acknowledged event among it) exactly once
        per_user: dict[str, int] = {}
        for _, record in a.log.entries():
            per_user[record.user_id] = per_user.get(record.user_id, 0) + 1
        for state in (a, b):
            m = state.retriever.models
            assert {u: len(m.history.events(m.users.index(u))[0]) for u in per_user} == per_user
    finally:
        stop.set()
        a.close()
        b.close()


def test_a_replica_started_later_catches_up_from_the_stream(trained, redis_server):
    a = replica(trained, redis_server.url)
    try:
        ids = [a.record_interaction("late-user", f"i{k}", 1.0, T0 + k)[0] for k in range(5)]
        late = replica(trained, redis_server.url)
        assert late.applied == StreamId.parse(ids[-1])
        assert history(late, "late-user") == [f"i{k}" for k in range(5)]
        late.close()
    finally:
        a.close()


def test_a_stream_error_names_the_server_without_credentials(redis_server):
    log = StreamLog(f"redis://:secret@127.0.0.1:{redis_server.port}/0", timeout_s=0.2)
    redis_server.kill()
    with pytest.raises(StreamError) as err:
        log.last_id()
    assert "secret" not in str(err.value) and f"127.0.0.1:{redis_server.port}" in str(err.value)
