"""The impressions log: records round-trip, record() never waits, batches are durable and
readable while the writer runs, retention bounds the file, and failures are survived."""

from __future__ import annotations

import logging
import math
import sqlite3
import subprocess
import sys
import time

import pytest

from shortlist.common.impressions import (
    SCHEMA_VERSION,
    Impression,
    ImpressionLog,
    ImpressionLogError,
    LogContents,
    Outcome,
    ShadowScore,
    latest_experiment,
    read_log,
)

T0 = 1_700_000_000.0


def impression(rid: str, user: str = "u1", ts: float = T0, experiment: str = "exp",
               variant: str = "a", items: tuple[str, ...] = ("i1", "i2", "i3"),
               teams: tuple[str, ...] = ()) -> Impression:
    return Impression(rid, user, experiment, variant, "v7", "ranker+mmr", False, items,
                      teams, ts)


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def blocker(path) -> sqlite3.Connection:
    """A second connection holding the write lock, so the log's writer waits for it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_every_record_type_round_trips(tmp_path):
    path = tmp_path / "imp.db"
    now = time.time()
    recs = [
        Impression("r1", "u1", "exp", "a", "v7", "ranker", True, ("i1", "i2"), (), now - 5),
        Impression("r2", "u2", "exp", "il", "v7", "interleave", False, ["i3", "i4"],
                   ["a", "b"], now - 4),
        Outcome("u1", "i2", "click", 1.0, now - 3, "r1"),
        Outcome("u2", "i4", "", 2.5, now - 2),
        ShadowScore("r1", "exp", "a", "shadowy", 0.7, -0.25, now - 1),
        ShadowScore("r2", "exp", "il", "shadowy", 0.0, math.nan, now - 1),
    ]
    with ImpressionLog(path) as log:
        assert all(log.record(r) for r in recs)
        assert log.flush()
        assert (log.written, log.dropped, log.failed) == (6, 0, 0)
    got = read_log([path])
    assert got.impressions == recs[:2]
    assert got.impressions[1].items == ("i3", "i4") and got.impressions[1].teams == ("a", "b")
    assert got.outcomes == recs[2:4]
    assert got.shadows[0] == recs[4]
    assert got.shadows[1].overlap == 0.0 and math.isnan(got.shadows[1].correlation)


def test_zero_ts_is_the_time_of_record(tmp_path):
    path = tmp_path / "imp.db"
    before = time.time()
    with ImpressionLog(path) as log:
        log.record(impression("r1", ts=0.0))
        log.record(Outcome("u1", "i1", "click", 1.0))
    after = time.time()
    got = read_log([path])
    assert before <= got.impressions[0].ts <= after
    assert before <= got.outcomes[0].ts <= after


def test_malformed_records_fail_where_they_are_built():
    with pytest.raises(ValueError, match="teams"):
        impression("r", items=("a", "b"), teams=("x",))
    with pytest.raises(ValueError, match="weight"):
        Outcome("u", "i", "click", math.nan)


def test_full_queue_drops_without_blocking(tmp_path):
    path = tmp_path / "imp.db"
    with ImpressionLog(path, max_queue=2, flush_interval_s=0.01) as log:
        held = blocker(path)
        try:
            assert log.record(impression("r1"))
            # The writer takes r1 and then waits for the lock: the queue is empty and stays
            # so until the blocker lets go, so the next two fill it exactly.
            wait_until(lambda: log.pending == 0)
            assert log.record(impression("r2")) and log.record(impression("r3"))
            start = time.perf_counter()
            assert log.record(impression("r4")) is False
            assert log.record(Outcome("u1", "i1", "click", 1.0)) is False
            assert time.perf_counter() - start < 0.1  # refused at once, not after a wait
            assert log.dropped == 2 and log.written == 0
        finally:
            held.execute("ROLLBACK")
            held.close()
        assert log.flush()
        assert log.written == 3 and log.failed == 0
    assert [i.request_id for i in read_log([path]).impressions] == ["r1", "r2", "r3"]


def test_committed_batches_are_readable_by_another_process_while_open(tmp_path):
    path = tmp_path / "imp.db"
    with ImpressionLog(path) as log:
        log.record(impression("r1", ts=time.time()))
        assert log.flush()
        script = ("import sys; from pathlib import Path; "
                  "from shortlist.common.impressions import read_log; "
                  "c = read_log([Path(sys.argv[1])]); "
                  "print(len(c.impressions), c.impressions[0].request_id)")
        done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["1", "r1"]
        # ... and the writer goes on after the reader has been and gone.
        log.record(impression("r2", ts=time.time()))
        assert log.flush()
        assert len(read_log([path]).impressions) == 2


def test_a_closed_log_reads_back_read_only(tmp_path):
    path = tmp_path / "imp.db"
    with ImpressionLog(path) as log:
        log.record(impression("r1", ts=time.time()))
    before = path.read_bytes()
    assert len(read_log([path]).impressions) == 1
    assert path.read_bytes() == before


def test_retention_at_open_and_while_running(tmp_path):
    path = tmp_path / "imp.db"
    now = time.time()
    with ImpressionLog(path) as log:  # the default 30 days keeps both
        log.record(impression("old", ts=now - 3 * 86400))
        log.record(Outcome("u1", "i1", "click", 1.0, now - 3 * 86400))
        log.record(ShadowScore("old", "exp", "a", "s", 1.0, 1.0, now - 3 * 86400))
        log.record(impression("new", ts=now - 60))
    assert len(read_log([path]).impressions) == 2
    with ImpressionLog(path, retention_s=86400) as log:  # at open: the old rows go
        got = read_log([path])
        assert [i.request_id for i in got.impressions] == ["new"]
        assert got.outcomes == [] and got.shadows == []
    with ImpressionLog(path, retention_s=3600, prune_interval_s=0.05,
                       flush_interval_s=0.01) as log:
        log.record(impression("stale", ts=now - 7200))  # written, then pruned by the writer
        assert log.flush()
        wait_until(lambda: [i.request_id for i in read_log([path]).impressions] == ["new"])


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "imp.db"
    ImpressionLog(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                 (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(ImpressionLogError, match="newer"):
        ImpressionLog(path)
    with pytest.raises(ImpressionLogError, match="newer"):
        read_log([path])


def test_reader_names_a_missing_or_foreign_file(tmp_path):
    missing = tmp_path / "nope.db"
    with pytest.raises(ImpressionLogError, match=str(missing)):
        read_log([missing])
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a database at all" * 100)
    with pytest.raises(ImpressionLogError, match=f"{text}: not an impressions log"):
        read_log([text])
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ImpressionLogError, match=f"{other}: not an impressions log"):
        read_log([other])


def test_close_is_idempotent_and_later_records_are_dropped(tmp_path):
    log = ImpressionLog(tmp_path / "imp.db")
    log.record(impression("r1"))
    log.close()
    log.close()
    assert log.written == 1
    assert log.record(impression("r2")) is False and log.dropped == 1
    assert not log._thread.is_alive()


def test_a_failed_write_is_counted_logged_once_and_survived(tmp_path, caplog):
    path = tmp_path / "imp.db"
    caplog.set_level(logging.ERROR, logger="shortlist.common.impressions")
    with ImpressionLog(path, flush_interval_s=0.01, busy_timeout_ms=50) as log:
        held = blocker(path)
        try:
            for rid in ("r1", "r2"):  # two batches, each fails with "database is locked"
                log.record(impression(rid))
                assert log.flush()
        finally:
            held.execute("ROLLBACK")
            held.close()
        assert (log.written, log.failed) == (0, 2)
        log.record(impression("r3"))
        assert log.flush()
        assert (log.written, log.failed) == (1, 2)
        assert log._thread.is_alive()
    errors = [r for r in caplog.records if "could not write" in r.getMessage()]
    assert len(errors) == 1
    assert [i.request_id for i in read_log([path]).impressions] == ["r3"]


def test_several_files_time_range_and_experiment(tmp_path):
    a, b = tmp_path / "gw1.db", tmp_path / "gw2.db"
    now = time.time()
    with ImpressionLog(a) as log:
        log.record(impression("r1", user="u1", ts=now - 100, experiment="old"))
        log.record(impression("r2", user="u1", ts=now - 50, experiment="exp"))
        log.record(ShadowScore("r2", "exp", "a", "s", 0.5, 0.1, now - 50))
        log.record(ShadowScore("r1", "old", "a", "s", 0.5, 0.1, now - 100))
    with ImpressionLog(b) as log:
        log.record(impression("r3", user="u2", ts=now - 40, experiment="exp"))
        log.record(Outcome("u1", "i1", "click", 1.0, now - 45))  # logged by the other gateway
        log.record(Outcome("u9", "i1", "click", 1.0, now - 45))  # a user never served
        log.record(Outcome("u2", "i1", "click", 1.0, now - 10))
    got = read_log([a, b], experiment="exp")
    assert [i.request_id for i in got.impressions] == ["r2", "r3"]
    assert [o.user_id for o in got.outcomes] == ["u1", "u2"]
    assert [s.request_id for s in got.shadows] == ["r2"]
    got = read_log([a, b], since=now - 60, until=now - 45, outcomes_until=now)
    assert [i.request_id for i in got.impressions] == ["r2"]
    assert [o.user_id for o in got.outcomes] == ["u1"]
    assert isinstance(got, LogContents)
    assert latest_experiment([a, b]) == "exp"
    assert latest_experiment([a]) == "exp"


def test_latest_experiment_prefers_a_named_one(tmp_path):
    path = tmp_path / "imp.db"
    ImpressionLog(path).close()
    assert latest_experiment([path]) is None
    now = time.time()
    with ImpressionLog(path) as log:
        log.record(impression("r1", ts=now - 10, experiment="exp"))
        log.record(impression("r2", ts=now, experiment=""))
    assert latest_experiment([path]) == "exp"


def test_a_repeated_request_id_keeps_the_first_list(tmp_path):
    path = tmp_path / "imp.db"
    with ImpressionLog(path) as log:
        log.record(impression("r1", items=("a",)))
        log.record(impression("r1", items=("b",)))
        log.record(Outcome("u1", "a", "click", 1.0))  # the rest of the batch is kept
        assert log.flush()
        assert (log.written, log.duplicates, log.failed) == (3, 1, 0)
    got = read_log([path])
    assert [i.items for i in got.impressions] == [("a",)] and len(got.outcomes) == 1
