"""RetrievalState's write path (group commit) on a real version and a real SQLite log.

Concurrent writers share commits; each is answered only after the commit holding its write is
durable and the write is applied; apply order is log order; a failed commit fails its whole
batch; a full queue refuses at once; close drains.

To make batches deterministic, some tests hold the state's write lock (as a version swap
does): the caller at the front of the queue cannot take its batch meanwhile, so writes pile up
behind it, and on release it takes them all into one commit. Waits are bounded loops on
observable state, never sleeps whose length matters, and no test asserts a timing.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shortlist.common import artifacts
from shortlist.common.errors import ServiceError
from shortlist.common.events import EventTypes, UnknownEventType
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.retrieval.errors import InvalidEventType, ItemNotFound, NotReady, WriteQueueFull
from shortlist.retrieval.eventlog import EventLog, EventLogError
from shortlist.retrieval.online import RetrievalState
from shortlist.retrieval.retriever import Retriever

WAIT_S = 60  # bound on waiting for another thread; generous for a loaded 2-core box
T0 = 1_700_000_000
REPO = Path(__file__).resolve().parents[2]


def load_state(root: Path, log_path: Path, **kw) -> RetrievalState:
    """A state serving the session's artifact over the log at ``log_path``, replayed."""
    version_dir = artifacts.resolve(root)
    manifest = artifacts.read_manifest(version_dir)
    state = RetrievalState(EventLog(log_path), **kw)
    retriever = Retriever(RetrievalModels.load(version_dir), manifest.version, 2000)
    state.swap(state.prepare(retriever, manifest.data.get("events")))
    return state


@pytest.fixture()
def log_path(tmp_path) -> Path:
    return tmp_path / "events.sqlite"


@pytest.fixture()
def make_state(trained, log_path) -> Iterator[Callable[..., RetrievalState]]:
    made: list[RetrievalState] = []

    def make(**kw) -> RetrievalState:
        made.append(load_state(trained, log_path, **kw))
        return made[-1]

    yield make
    for state in made:
        state.close()


class Call:
    """One write made from a thread of its own: its answer or its exception."""

    def __init__(self, fn: Callable, *args) -> None:
        self.result: object = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, *args), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable, *args) -> None:
        try:
            self.result = fn(*args)
        except BaseException as exc:  # inspected by the test
            self.error = exc

    def join(self) -> Call:
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "a write was never answered"
        return self


@contextmanager
def write_lock_held(state: RetrievalState) -> Iterator[None]:
    """Hold the write lock, as a swap does: queued writes wait for it, then form one batch."""
    with state._lock:
        yield


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.001)


def queue_in_order(state: RetrievalState, calls: list[tuple[Callable, tuple]]) -> list[Call]:
    """Start each write once the previous one is queued, so the queue order is known."""
    started = []
    for k, (fn, args) in enumerate(calls, 1):
        started.append(Call(fn, *args))
        wait_until(lambda k=k: state.queued == k, f"{k} writes are queued")
    return started


def user_stamps(state: RetrievalState, user: str) -> list[int]:
    m = state.retriever.models
    return m.history.events(m.users.index(user))[1].tolist()


def title_of(state: RetrievalState, item: str) -> str:
    catalog = state.retriever.models.catalog
    return catalog.titles[catalog.vocab.index(item)]


# -- acknowledgement ---------------------------------------------------------------------


def test_a_write_is_logged_applied_and_answered_with_its_seq(make_state):
    state = make_state()
    seq, n, duplicate = state.record_interaction("new-user", "i3", 2.0, T0)
    assert not duplicate
    assert n == 1 and user_stamps(state, "new-user") == [T0]
    item_seq, created = state.upsert_item("fresh", "Fresh Title", ["Drama"], "text")
    assert created and title_of(state, "fresh") == "Fresh Title"
    assert state.upsert_item("fresh", "Renamed", ["Drama"], "text")[1] is False
    [rec] = state.log.interactions()
    assert (rec.seq, rec.user_id, rec.item_id, rec.weight, rec.timestamp) == (
        seq, "new-user", "i3", 2.0, T0)
    assert [r.seq for r in state.log.items()][0] == item_seq


def test_an_unknown_item_is_refused_before_logging(make_state, log_path):
    with pytest.raises(ItemNotFound, match="nope"):
        make_state().record_interaction("u1", "nope", 1.0, T0)
    with EventLog(log_path) as log:
        assert log.last_seq("interactions") == 0


def user_weights(state: RetrievalState, user: str) -> dict[str, float]:
    m = state.retriever.models
    items, _, weights = m.history.events(m.users.index(user))
    return {m.catalog.vocab.id(i): float(w) for i, w in zip(items, weights, strict=True)}


def test_an_event_type_is_logged_normalised_and_weighed_by_the_version(make_state):
    state = make_state()
    table = state.retriever.models.event_types
    state.record_interaction("typed-user", "i3", 2.0, T0, "", " DisLike ")
    state.record_interaction("typed-user", "i4", 1.0, T0 + 1, "", "purchase")
    state.record_interaction("typed-user", "i5", 1.0, T0 + 2)
    assert [r.event for r in state.log.interactions()] == ["dislike", "purchase", ""]
    assert user_weights(state, "typed-user") == {
        "i3": 2.0 * table.weight("dislike"), "i4": table.weight("purchase"), "i5": 1.0}
    assert table.weight("dislike") < 0


@pytest.mark.parametrize("event", ["teleport", "not a name!"])
def test_an_unknown_event_type_is_refused_before_logging(make_state, log_path, event):
    with pytest.raises(InvalidEventType, match="dislike") as err:  # names the known types
        make_state().record_interaction("u1", "i3", 1.0, T0, "", event)
    assert err.value.status == "INVALID_ARGUMENT" and isinstance(err.value, UnknownEventType)
    with EventLog(log_path) as log:
        assert log.last_seq("interactions") == 0


def test_a_version_swapped_in_while_a_write_waits_checks_its_type_again(make_state):
    state = make_state()
    with write_lock_held(state):
        call = Call(state.record_interaction, "late-user", "i3", 1.0, T0, "", "dislike")
        wait_until(lambda: state.queued == 1, "the write is queued")
        # as a version whose table lacks the type would, once swapped in
        state.retriever.models.event_types = EventTypes(("",), (1.0,))
    assert isinstance(call.join().error, InvalidEventType)
    assert state.log.last_seq("interactions") == 0


def test_replay_skips_a_logged_type_the_version_does_not_know(trained, log_path, caplog):
    with EventLog(log_path) as log:
        log.append_interaction("replay-user", "i3", 1.0, T0, event="teleport")
        log.append_interaction("replay-user", "i4", 1.0, T0 + 1, event="dislike")
    caplog.set_level(logging.WARNING, logger="shortlist.retrieval.online")
    state = load_state(trained, log_path)
    try:
        assert list(user_weights(state, "replay-user")) == ["i4"]
        assert [r.event for r in state.log.interactions()] == ["teleport", "dislike"]  # kept
        [warning] = [r for r in caplog.records if "skipped" in r.getMessage()]
        assert warning.fields["skipped"] == 1
    finally:
        state.close()


def test_before_a_version_is_loaded_writes_are_not_ready(log_path):
    state = RetrievalState(EventLog(log_path))
    try:
        with pytest.raises(NotReady):
            state.record_interaction("u", "i1", 1.0, T0)
        with pytest.raises(NotReady):
            state.upsert_item("i", "t", [], "")
        assert state.queued == 0 and state.log.last_seq("items") == 0
    finally:
        state.close()


def test_queued_writes_share_one_commit_in_queue_order(make_state):
    state = make_state()
    writes = [(state.record_interaction, ("batch-user", f"i{k}", 1.0, T0 + k)) for k in range(5)]
    writes.insert(2, (state.upsert_item, ("batch-item", "Batched", ["Comedy"], "")))
    with write_lock_held(state):
        calls = queue_in_order(state, writes)
    for call in calls:
        assert call.join().error is None
    assert (state.commits, state.committed_writes) == (1, 6)  # one transaction, one fsync
    seqs = [c.result[0] for c in calls if c is not calls[2]]
    assert seqs == list(range(seqs[0], seqs[0] + 5))  # gap-free, in queue order
    assert [c.result[1] for c in calls if c is not calls[2]] == [1, 2, 3, 4, 5]
    logged = list(state.log.interactions())
    assert [r.timestamp for r in logged] == [T0 + k for k in range(5)]
    assert len({r.received_at for r in logged}) == 1  # stamped once, by the one commit
    assert user_stamps(state, "batch-user") == [T0 + k for k in range(5)]


def test_batches_are_bounded(make_state):
    state = make_state(max_batch=3)
    with write_lock_held(state):
        calls = queue_in_order(state, [(state.record_interaction, ("bounded", f"i{k}", 1.0,
                                                                    T0 + k)) for k in range(7)])
    assert all(c.join().error is None for c in calls)
    assert (state.commits, state.committed_writes) == (3, 7)  # 3 + 3 + 1
    assert [c.result[0] for c in calls] == sorted(c.result[0] for c in calls)


def test_concurrent_writers_are_all_acknowledged_and_replayable(make_state, trained, log_path):
    state = make_state()
    n_threads, per_thread = 16, 40
    start = threading.Barrier(n_threads)
    acked: dict[int, list[tuple[int, int]]] = {}  # thread -> [(seq, timestamp)]
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            start.wait()
            mine = []
            for k in range(per_thread):
                stamp = T0 + t * 1000 + k
                seq, _, _ = state.record_interaction(f"cw-u{k % 5}", f"i{(t * 7 + k) % 240}",
                                                  1.0 + t, stamp)
                mine.append((seq, stamp))
                if k % 10 == 0:
                    state.upsert_item(f"cw-item-{t}", f"title {t} {k}", ["Drama"], "text")
            acked[t] = mine
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(WAIT_S)
    assert not errors and len(acked) == n_threads
    seqs = [seq for mine in acked.values() for seq, _ in mine]
    assert len(seqs) == len(set(seqs)) == n_threads * per_thread
    for mine in acked.values():
        assert [s for s, _ in mine] == sorted(s for s, _ in mine)  # increasing per caller
    logged = {r.seq: r for r in state.log.interactions()}
    assert set(logged) == set(seqs)  # every acknowledged write, and nothing else
    for t, mine in acked.items():
        for seq, stamp in mine:
            assert (logged[seq].timestamp, logged[seq].weight) == (stamp, 1.0 + t)
    assert state.committed_writes == n_threads * per_thread + n_threads * 4

    # a restart: a fresh version replaying the log holds exactly the live state
    replayed = load_state(trained, log_path)
    try:
        for u in range(5):
            assert user_stamps(replayed, f"cw-u{u}") == user_stamps(state, f"cw-u{u}")
        for t in range(n_threads):
            assert title_of(replayed, f"cw-item-{t}") == title_of(state, f"cw-item-{t}")
    finally:
        replayed.log.close()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_apply_order_is_log_order_under_concurrency(make_state, seed):
    """Seeded stress: shared users, shared items upserted again and again, unknown items."""
    state = make_state(max_batch=8)  # several batches per round of writers
    users = [f"s{seed}-u{j}" for j in range(4)]
    items = [f"s{seed}-item-{j}" for j in range(3)]
    refused: list[int] = []  # timestamps of interactions refused as unknown
    errors: list[BaseException] = []
    start = threading.Barrier(12)

    def writer(t: int) -> None:
        rng = random.Random(seed * 100 + t)
        try:
            start.wait()
            for k in range(50):
                roll = rng.random()
                if roll < 0.2:
                    state.upsert_item(rng.choice(items), f"t{t}-{k}", ["SciFi"], "robot")
                    continue
                stamp = T0 + t * 1000 + k
                # base items, items only known once upserted, and items never known
                item = (f"i{rng.randrange(240)}" if roll < 0.8 else rng.choice(items)
                        if roll < 0.9 else f"never-{t}-{k}")
                try:
                    state.record_interaction(rng.choice(users), item, 1.0, stamp)
                except ItemNotFound:
                    refused.append(stamp)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(12)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(WAIT_S)
    assert not errors
    logged = list(state.log.interactions())
    assert refused and not {r.timestamp for r in logged} & set(refused)
    for user in users:  # each user's history is in log order
        assert user_stamps(state, user) == [r.timestamp for r in logged if r.user_id == user]
    upserts = list(state.log.items())
    for item in items:  # the last logged upsert is the one in force
        last = [r.title for r in upserts if r.item_id == item]
        if last:
            assert title_of(state, item) == last[-1]


# -- failures and bounds -----------------------------------------------------------------


def test_a_batch_that_fails_to_commit_fails_all_its_waiters(make_state):
    state = make_state()
    state.record_interaction("ok-user", "i1", 1.0, T0)
    before = (state.log.last_seq("interactions"), state.log.last_seq("items"), state.commits)
    conn = state.log._conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    with write_lock_held(state):
        # A full disk, as SQLite reports it: the file may not grow by a single page.
        conn.execute(f"PRAGMA max_page_count = {pages}")
        calls = queue_in_order(state, [
            (state.record_interaction, ("ok-user", "i2", 1.0, T0 + 1)),
            (state.upsert_item, ("big-item", "Big", ["Drama"], "word " * 20_000)),
            (state.record_interaction, ("other-user", "i3", 1.0, T0 + 2)),
        ])
    for call in calls:
        assert isinstance(call.join().error, EventLogError), call.error
        assert call.error.status == "UNAVAILABLE"  # not acknowledged: the client may retry
        assert "none of them was logged" in str(call.error)
        assert "full" in str(call.error)
        assert isinstance(call.error.__cause__, sqlite3.Error)
    assert len({id(c.error) for c in calls}) == 3  # one exception object per caller
    # nothing logged, nothing applied
    assert (state.log.last_seq("interactions"), state.log.last_seq("items"),
            state.commits) == before
    assert user_stamps(state, "ok-user") == [T0]
    assert "big-item" not in state.retriever.models.catalog.vocab
    assert state.retriever.models.users.index("other-user") < 0

    conn.execute("PRAGMA max_page_count = 1073741823")  # space again: writes go on
    seq, n, _ = state.record_interaction("ok-user", "i2", 1.0, T0 + 1)
    assert seq > before[0] and n == 2
    assert [r.timestamp for r in state.log.interactions()] == [T0, T0 + 1]


def test_a_full_queue_refuses_at_once_with_resource_exhausted(make_state):
    state = make_state(max_queue=2)
    with write_lock_held(state):
        calls = queue_in_order(state, [(state.record_interaction, ("q", f"i{k}", 1.0, T0 + k))
                                       for k in range(2)])
        # From threads of their own: a write that queued instead of being refused would wait
        # for the lock this test holds (caught as a third queued write, not as a hang).
        for fn, args in [(state.record_interaction, ("q", "i9", 1.0, T0 + 9)),
                         (state.upsert_item, ("q-item", "t", [], ""))]:
            over = Call(fn, *args)
            wait_until(lambda over=over: not over.thread.is_alive() or state.queued > 2,
                       "the write is refused or queued")
            assert state.queued == 2, "a write beyond the bound was queued"
            assert isinstance(over.join().error, WriteQueueFull), over.error
            assert "2 writes are waiting" in str(over.error)
            assert isinstance(over.error, ServiceError)
            assert over.error.status == "RESOURCE_EXHAUSTED"
    assert all(c.join().error is None for c in calls)
    assert [r.timestamp for r in state.log.interactions()] == [T0, T0 + 1]
    assert list(state.log.items()) == []
    assert state.record_interaction("q", "i9", 1.0, T0 + 9)[1] == 3  # room again


def test_close_drains_queued_writes_then_refuses(make_state, log_path):
    state = make_state(max_batch=1)  # draining takes several batches after close has begun
    with write_lock_held(state):
        calls = queue_in_order(state, [(state.record_interaction, ("drain", f"i{k}", 1.0,
                                                                    T0 + k)) for k in range(4)])
        closing = Call(state.close)
        wait_until(lambda: state._closing, "close has begun")
        late = Call(state.record_interaction, "drain", "i5", 1.0, T0 + 5)
        wait_until(lambda: not late.thread.is_alive() or state.queued > 4,
                   "the late write is refused or queued")
        assert isinstance(late.join().error, EventLogError) and "closed" in str(late.error)
    assert closing.join().error is None
    assert all(c.join().error is None for c in calls)  # answered, not dropped
    state.close()  # idempotent
    with EventLog(log_path) as log:
        assert [r.timestamp for r in log.interactions()] == [T0 + k for k in range(4)]


# -- kill -9 -------------------------------------------------------------------------------

CHILD = """
import sys, threading
from pathlib import Path
from shortlist.common import artifacts
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.retrieval.eventlog import EventLog
from shortlist.retrieval.online import RetrievalState
from shortlist.retrieval.retriever import Retriever

version_dir = artifacts.resolve(Path(sys.argv[1]))
state = RetrievalState(EventLog(sys.argv[2]))
state.swap(state.prepare(Retriever(RetrievalModels.load(version_dir), "v", 2000), None))
out = threading.Lock()

def writer(w):
    i = 0
    while True:
        seq, _, _ = state.record_interaction(f"k{w}", f"i{i % 240}", 1.0, 1_700_000_000 + i)
        with out:  # printed only once acknowledged
            print(seq, w, i, flush=True)
        i += 1

for w in range(8):
    threading.Thread(target=writer, args=(w,), daemon=True).start()
threading.Event().wait()
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_every_write_acknowledged_by_group_commit_survives_kill_9(trained, log_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(trained), str(log_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=env)
    acked: dict[int, tuple[int, int]] = {}
    try:
        while len(acked) < 400:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"writer exited early: {proc.stderr.read()[-2000:]}")
            seq, w, i = map(int, line.split())
            acked[seq] = (w, i)
        proc.send_signal(signal.SIGKILL)  # mid-stream: eight threads are writing
        proc.wait(timeout=30)
        for line in proc.stdout.read().splitlines():  # printed before dying: acknowledged
            parts = line.split()
            if len(parts) == 3:
                acked[int(parts[0])] = (int(parts[1]), int(parts[2]))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    with EventLog(log_path) as log:
        stored = {r.seq: r for r in log.interactions()}
    missing = sorted(set(acked) - set(stored))
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
    for seq, (w, i) in acked.items():
        assert (stored[seq].user_id, stored[seq].timestamp) == (f"k{w}", T0 + i)
    for w in range(8):  # each writer's acknowledged writes are in the log in its own order
        mine = sorted((seq, i) for seq, (ww, i) in acked.items() if ww == w)
        assert [i for _, i in mine] == sorted(i for _, i in mine)


def test_a_retried_write_with_its_client_event_id_is_answered_not_logged_again(make_state):
    state = make_state()
    seq, n, duplicate = state.record_interaction("retry-user", "i3", 1.0, T0, "evt-1")
    assert (n, duplicate) == (1, False)
    again = state.record_interaction("retry-user", "i3", 1.0, T0, "evt-1")
    assert again == (seq, 1, True)
    assert user_stamps(state, "retry-user") == [T0]  # applied once
    other = state.record_interaction("retry-user", "i4", 1.0, T0 + 1, "evt-2")
    assert other[0] > seq and other[1:] == (2, False)
    assert [r.item_id for r in state.log.interactions()] == ["i3", "i4"]


def test_retries_in_one_batch_log_the_write_once(make_state):
    state = make_state()
    with state._lock:  # as a swap would: the writes pile up into one batch
        calls = [Call(state.record_interaction, "batch-user", "i5", 1.0, T0, "same-id")
                 for _ in range(4)]
        deadline = time.monotonic() + WAIT_S
        while state.queued < 4 and time.monotonic() < deadline:
            time.sleep(0.001)
    answers = [c.join().result for c in calls]
    assert all(c.error is None for c in calls), [c.error for c in calls]
    assert len({a[0] for a in answers}) == 1
    assert sorted(a[2] for a in answers) == [False, True, True, True]
    assert len([r for r in state.log.interactions() if r.user_id == "batch-user"]) == 1
    assert user_stamps(state, "batch-user") == [T0]

