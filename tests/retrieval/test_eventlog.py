"""EventLog: round trips, seq order, replay filters, durability settings, batches (all or
nothing), threads, kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from shortlist.retrieval import eventlog
from shortlist.retrieval.eventlog import (
    SCHEMA_VERSION,
    Entry,
    EventLog,
    EventLogError,
    Interaction,
    ItemRecord,
    interaction_entry,
    item_entry,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def path(tmp_path) -> Path:
    return tmp_path / "events.sqlite"


def test_interaction_round_trip(path):
    with EventLog(path) as log:
        a = log.append_interaction("u1", "i9", 2.5, 1_700_000_000)
        b = log.append_interaction("", "ünï\x00code", -0.125, 0)
        c = log.append_interaction("u1", "i9", float("inf"), -5)
        assert a < b < c
        got = list(log.interactions())
    assert [r.seq for r in got] == [a, b, c]
    assert all(isinstance(r, Interaction) for r in got)
    assert (got[0].user_id, got[0].item_id, got[0].weight, got[0].timestamp) == (
        "u1", "i9", 2.5, 1_700_000_000)
    assert (got[1].user_id, got[1].item_id, got[1].weight, got[1].timestamp) == (
        "", "ünï\x00code", -0.125, 0)
    assert got[2].weight == float("inf") and got[2].timestamp == -5
    assert all(isinstance(r.received_at, float) and r.received_at > 0 for r in got)


def test_item_round_trip(path):
    with EventLog(path) as log:
        a = log.append_item("i1", "Title", ["SciFi", "Drama", "SciFi"], "space robots")
        b = log.append_item("i2", "", [], "")
        c = log.append_item("i1", "Title 2", ("Ä", "b|c"), "new text")
        got = list(log.items())
    assert [r.seq for r in got] == [a, b, c] and a < b < c
    assert all(isinstance(r, ItemRecord) for r in got)
    assert (got[0].item_id, got[0].title, got[0].categories, got[0].text) == (
        "i1", "Title", ["SciFi", "Drama", "SciFi"], "space robots")
    assert (got[1].item_id, got[1].title, got[1].categories, got[1].text) == ("i2", "", [], "")
    assert got[2].categories == ["Ä", "b|c"]


def test_values_sqlite_would_alter_raise_instead(path):
    with EventLog(path) as log:
        with pytest.raises(TypeError):
            log.append_interaction(5, "i", 1.0, 0)  # would become '5'
        with pytest.raises(ValueError):
            log.append_interaction("u", "i", float("nan"), 0)  # would become NULL
        with pytest.raises(TypeError):
            log.append_interaction("u", "i", 1.0, 1.5)  # would be truncated
        with pytest.raises(TypeError):
            log.append_item("i", "t", "Drama", "")  # would be split into characters
        assert list(log.interactions()) == [] and list(log.items()) == []
        assert log.last_seq("interactions") == 0 and log.last_seq("items") == 0


def test_seqs_are_monotonic_per_table_and_after_seq_filters(path):
    with EventLog(path) as log:
        seqs = [log.append_interaction(f"u{i}", f"i{i}", 1.0, i) for i in range(10)]
        items = [log.append_item(f"i{i}", f"t{i}", [], "") for i in range(4)]
        assert seqs == sorted(seqs) and len(set(seqs)) == 10
        assert items == sorted(items)
        assert log.last_seq("interactions") == seqs[-1]
        assert log.last_seq("items") == items[-1]
        assert [r.seq for r in log.interactions(after_seq=seqs[6])] == seqs[7:]
        assert [r.user_id for r in log.interactions(seqs[6])] == ["u7", "u8", "u9"]
        assert list(log.interactions(after_seq=seqs[-1])) == []
        assert [r.seq for r in log.items(after_seq=items[1])] == items[2:]
        with pytest.raises(ValueError):
            log.last_seq("meta")


def test_reads_page_through_long_logs_without_holding_the_lock(path, monkeypatch):
    monkeypatch.setattr(eventlog, "PAGE", 10)  # several pages without thousands of fsyncs
    page = eventlog.PAGE
    n = page * 2 + 7
    with EventLog(path) as log:
        for i in range(n):
            log.append_interaction("u", f"i{i}", 1.0, i)
        seen = []
        for rec in log.interactions():
            seen.append(rec.timestamp)
            if rec.timestamp == 0:  # appending mid-iteration must not deadlock
                log.append_interaction("late", "x", 1.0, n)
        assert seen == list(range(n + 1))
        assert [r.timestamp for r in log.interactions(after_seq=page)] == list(
            range(page, n + 1))
        assert [r.seq for r in log.interactions(after_seq=2 * page)] == list(
            range(2 * page + 1, n + 2))


def test_reopening_keeps_everything_and_the_schema_version(path):
    with EventLog(path) as log:
        s1 = log.append_interaction("u", "i", 1.0, 10)
        t1 = log.append_item("i", "T", ["a"], "x")
    with EventLog(path) as log:
        assert [r.seq for r in log.interactions()] == [s1]
        assert [r.seq for r in log.items()] == [t1]
        s2 = log.append_interaction("u", "j", 1.0, 11)
        assert s2 > s1
    with EventLog(path) as log:
        assert [r.item_id for r in log.interactions()] == ["i", "j"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
            str(SCHEMA_VERSION),)


def test_a_newer_schema_is_refused(path):
    EventLog(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                     (str(SCHEMA_VERSION + 1),))
    with pytest.raises(EventLogError, match="newer"):
        EventLog(path)


def test_an_interaction_keeps_its_event_type(path):
    with EventLog(path) as log:
        typed = log.append_interaction("u", "i", 2.0, 5, event="dislike")
        untyped = log.append_interaction("u", "j", 1.0, 6)
        seqs = log.append_batch([interaction_entry("v", "k", 1.0, 7, "evt-9", "purchase")])
    with EventLog(path) as log:
        got = {r.seq: r for r in log.interactions()}
    assert got[typed].event == "dislike" and got[typed].weight == 2.0
    assert got[untyped].event == ""
    assert got[seqs[0]].event == "purchase"
    with pytest.raises(TypeError, match="event must be str"):
        interaction_entry("u", "i", 1.0, 0, event=None)


# The schema before event types (schema 1), as a log written by that code has it.
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE interactions (seq INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT, item_id TEXT,
                           weight REAL, timestamp INTEGER, received_at REAL);
CREATE TABLE client_events (client_event_id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE items (seq INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT, title TEXT,
                    categories TEXT, text TEXT, received_at REAL);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO interactions (user_id, item_id, weight, timestamp, received_at)
    VALUES ('old-user', 'i1', 3.0, 100, 1.5);
INSERT INTO client_events VALUES ('old-evt', 1);
INSERT INTO items (item_id, title, categories, text, received_at)
    VALUES ('i1', 'One', '["a"]', 'x', 1.5);
"""


def test_a_log_written_before_event_types_opens_and_is_migrated(path):
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA_1)
    conn.close()
    with EventLog(path) as log:
        [old] = list(log.interactions())
        assert (old.seq, old.user_id, old.weight, old.timestamp, old.event) == (
            1, "old-user", 3.0, 100, "")
        assert [r.title for r in log.items()] == ["One"]
        assert log.client_event_seq("old-evt") == 1
        new = log.append_interaction("old-user", "i2", 1.0, 101, event="skip")
        assert new == 2
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
            str(SCHEMA_VERSION),)
        assert conn.execute("SELECT seq, event FROM interactions ORDER BY seq").fetchall() == [
            (1, ""), (2, "skip")]
    conn.close()
    with EventLog(path) as log:  # migrated once: opening again changes nothing
        assert [r.event for r in log.interactions()] == ["", "skip"]


def test_wal_and_synchronous_full_are_in_force(path):
    with EventLog(path) as log:
        pragmas = log.pragmas()
        assert pragmas["journal_mode"] == "wal"
        assert pragmas["synchronous"] == 2  # FULL
        assert pragmas["busy_timeout"] > 0
        # and directly on the connection the log writes through
        conn = log._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert conn.isolation_level is None  # no implicit transactions: one per batch
    # WAL is a property of the file: another connection sees it too
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_batch_is_one_transaction_with_seqs_in_order(path):
    with EventLog(path) as log:
        assert log.append_batch([]) == []
        first = log.append_interaction("u0", "i0", 1.0, 0)
        seqs = log.append_batch([
            interaction_entry("u1", "i1", 1.0, 1),
            item_entry("i9", "Nine", ["a"], "x"),
            interaction_entry("u2", "i2", 2.0, 2),
            item_entry("i9", "Nine again", [], ""),
        ])
        assert seqs[0] == first + 1 and seqs[2] == first + 2  # interactions' own sequence
        assert seqs[1] < seqs[3]  # items' own sequence, in the order given
        got = list(log.interactions())
        assert [(r.seq, r.user_id) for r in got] == [(first, "u0"), (seqs[0], "u1"),
                                                    (seqs[2], "u2")]
        items = list(log.items())
        assert [(r.seq, r.title) for r in items] == [(seqs[1], "Nine"), (seqs[3], "Nine again")]
        # one commit stamps the whole batch
        assert got[1].received_at == got[2].received_at == items[0].received_at
        assert got[0].received_at <= got[1].received_at
        assert not log._conn.in_transaction
        with pytest.raises(ValueError, match="not an event log entry"):
            log.append_batch([Entry("meta", ("k", "v"))])


def test_a_batch_that_cannot_commit_logs_none_of_it(path):
    with EventLog(path) as log:
        before = log.append_interaction("u", "i", 1.0, 0)
        conn = log._conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
        batch = [interaction_entry("u", "j", 1.0, 1),
                 item_entry("big", "Big", [], "word " * 20_000),
                 interaction_entry("u", "k", 1.0, 2)]
        with pytest.raises(EventLogError, match="batch of 3 write.*none of them was logged.*"
                                                "full") as err:
            log.append_batch(batch)
        assert isinstance(err.value.__cause__, sqlite3.Error)
        assert not conn.in_transaction
        assert [r.seq for r in log.interactions()] == [before]
        assert list(log.items()) == []
        conn.execute("PRAGMA max_page_count = 1073741823")
        seqs = log.append_batch(batch)  # room again: the same batch commits whole
        assert seqs[0] == before + 1 and [r.item_id for r in log.interactions()] == [
            "i", "j", "k"]


def test_closed_log_refuses_work(path):
    log = EventLog(path)
    log.close()
    log.close()  # idempotent
    with pytest.raises(EventLogError):
        log.append_interaction("u", "i", 1.0, 0)


def test_concurrent_appends_from_many_threads(path):
    n_threads, per_thread = 8, 200
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(n_threads)

    with EventLog(path) as log:
        def worker(t: int) -> None:
            try:
                start.wait()
                seqs = []
                for k in range(per_thread):
                    seqs.append(log.append_interaction(f"t{t}", f"k{k}", float(t), k))
                    if k % 50 == 0:
                        log.append_item(f"t{t}-{k}", "title", [str(t)], "")
                        sum(1 for _ in log.interactions(after_seq=seqs[-1] - 5))
                results[t] = seqs
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors
        all_seqs = [s for seqs in results.values() for s in seqs]
        assert len(all_seqs) == len(set(all_seqs)) == n_threads * per_thread
        for seqs in results.values():
            assert seqs == sorted(seqs)
        stored = {r.seq: r for r in log.interactions()}
        assert set(stored) == set(all_seqs)
        for t, seqs in results.items():
            assert [(stored[s].user_id, stored[s].item_id) for s in seqs] == [
                (f"t{t}", f"k{k}") for k in range(per_thread)]
        assert len(list(log.items())) == n_threads * 4


CHILD = """
import sys
from shortlist.retrieval.eventlog import EventLog

log = EventLog(sys.argv[1])
i = 0
while True:
    seq = log.append_interaction(f"u{i}", f"i{i % 97}", 1.0 + i, 1_700_000_000 + i)
    print(seq, i, flush=True)
    i += 1
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_every_acknowledged_append_survives_kill_9(path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    acked: dict[int, int] = {}
    try:
        while len(acked) < 300:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"writer exited early: {proc.stderr.read()}")
            seq, i = map(int, line.split())
            acked[seq] = i
        proc.send_signal(signal.SIGKILL)  # mid-stream: it is appending as fast as it can
        proc.wait(timeout=30)
        # anything it printed before dying was acknowledged too
        for line in proc.stdout.read().splitlines():
            parts = line.split()
            if len(parts) == 2:
                acked[int(parts[0])] = int(parts[1])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    with EventLog(path) as log:
        stored = {r.seq: r for r in log.interactions()}
    missing = sorted(set(acked) - set(stored))
    assert not missing, f"{len(missing)} acknowledged appends lost, e.g. {missing[:5]}"
    for seq, i in acked.items():
        rec = stored[seq]
        assert (rec.user_id, rec.item_id, rec.weight, rec.timestamp) == (
            f"u{i}", f"i{i % 97}", 1.0 + i, 1_700_000_000 + i)
    # seqs are gap-free in commit order: what survived is a prefix ending at or after the last ack
    assert sorted(stored) == list(range(1, max(stored) + 1))
    assert max(stored) >= max(acked)
