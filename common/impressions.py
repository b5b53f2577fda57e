"""The impressions log: what each Recommend served, what users did next, and shadow scores.

An A/B experiment is judged after the fact, by joining the lists that were served (with the
experiment and variant that served them) to the interactions that followed. The gateway keeps
that record here, one SQLite file per gateway; ``shortlist-train experiment-report`` reads one
or several such files (``read_log``) and does the statistics.

Off the request path. ``ImpressionLog.record`` only puts the record on a bounded queue: no
I/O, no lock held while anything slow happens. When the queue is full the record is dropped
and counted, never waited for, because a late or lost impression costs a little statistical
power while a stalled Recommend costs a user. One daemon thread drains the queue every
``flush_interval_s`` (sooner when the queue is half full) and writes everything it took in one
transaction: one fsync per batch however busy the server is.

Durability. WAL journal with ``synchronous=FULL``: a committed batch survives a process kill
and, as far as the disk honours fsync, a power loss. What is still queued is lost with the
process (at most ``flush_interval_s`` of traffic); nothing here is an acknowledged write, so
batching is worth that. A batch that cannot be written (disk full, I/O error, the database
locked past the busy timeout) is counted in ``failed`` and logged once per kind of error; the
thread carries on with the next batch.

Retention. Rows older than ``retention_s`` are deleted when the log opens and by the writer
about once a minute, so the file stays bounded (SQLite reuses the freed pages).

Readers. ``read_log`` opens files read-only, so a live gateway's log can be read while it is
being written (WAL lets one writer and readers proceed together).
"""

from __future__ import annotations

import json
import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DAY_S = 86_400.0
DEFAULT_RETENTION_S = 30 * DAY_S
PRUNE_INTERVAL_S = 60.0
BUSY_TIMEOUT_MS = 10_000
MAX_BATCH = 5_000  # rows per transaction: bounds how long one commit holds the write lock
DROP_LOG_INTERVAL_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS impressions (
    request_id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    user_id TEXT NOT NULL,
    experiment TEXT NOT NULL,
    variant TEXT NOT NULL,
    version TEXT NOT NULL,
    configuration TEXT NOT NULL,
    degraded INTEGER NOT NULL,
    items TEXT NOT NULL /* JSON list, position order */,
    teams TEXT NOT NULL /* JSON list, [] or parallel to items */
);
CREATE INDEX IF NOT EXISTS impressions_user_ts ON impressions (user_id, ts);
CREATE INDEX IF NOT EXISTS impressions_ts ON impressions (ts);
CREATE INDEX IF NOT EXISTS impressions_experiment_ts ON impressions (experiment, ts);
CREATE TABLE IF NOT EXISTS outcomes (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    event TEXT NOT NULL,
    weight REAL NOT NULL,
    follows_request_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outcomes_user_ts ON outcomes (user_id, ts);
CREATE INDEX IF NOT EXISTS outcomes_ts ON outcomes (ts);
CREATE TABLE IF NOT EXISTS shadow (
    request_id TEXT NOT NULL,
    ts REAL NOT NULL,
    experiment TEXT NOT NULL,
    served_variant TEXT NOT NULL,
    shadow_variant TEXT NOT NULL,
    overlap REAL /* NULL: NaN */,
    correlation REAL /* NULL: NaN (undefined for lists without two comparable items) */
);
CREATE INDEX IF NOT EXISTS shadow_ts ON shadow (ts);
CREATE INDEX IF NOT EXISTS shadow_experiment_ts ON shadow (experiment, ts)
"""
TABLES = ("impressions", "outcomes", "shadow")


class ImpressionLogError(Exception):
    """A log that cannot be opened or read: missing, not an impressions log, or written by a
    newer schema than this code knows."""


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class Impression:
    """One served list; ``teams`` is empty, or names per item the interleaving arm that
    contributed it. ``ts`` 0 means "when recorded"."""

    request_id: str
    user_id: str
    experiment: str
    variant: str
    version: str
    configuration: str
    degraded: bool
    items: tuple[str, ...]
    teams: tuple[str, ...] = ()
    ts: float = 0.0

    def __post_init__(self) -> None:
        # Checked here, in the caller's thread, so a malformed record fails where it is built
        # instead of failing (and losing) a whole batch in the writer.
        object.__setattr__(self, "items", tuple(self.items))
        object.__setattr__(self, "teams", tuple(self.teams))
        if self.teams and len(self.teams) != len(self.items):
            raise ValueError(f"impression {self.request_id}: {len(self.teams)} teams for "
                             f"{len(self.items)} items (teams are empty or one per item)")
        object.__setattr__(self, "ts", _finite("ts", self.ts))


@dataclass(frozen=True, slots=True)
class Outcome:
    """An interaction the gateway acknowledged; ``follows_request_id`` is the Recommend the
    caller says it follows ("" when it did not say)."""

    user_id: str
    item_id: str
    event: str
    weight: float
    ts: float = 0.0
    follows_request_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _finite("weight", self.weight))
        object.__setattr__(self, "ts", _finite("ts", self.ts))


@dataclass(frozen=True, slots=True)
class ShadowScore:
    """A shadow variant's list compared with the one served (overlap@10, rank correlation;
    either may be NaN)."""

    request_id: str
    experiment: str
    served_variant: str
    shadow_variant: str
    overlap: float
    correlation: float
    ts: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ts", _finite("ts", self.ts))


Record = Impression | Outcome | ShadowScore


@dataclass
class LogContents:
    """What ``read_log`` found, each list in time order."""

    impressions: list[Impression] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    shadows: list[ShadowScore] = field(default_factory=list)
    # Times of the selected users' other lists (other experiments, or outside since/until),
    # by user: a click after one of those followed it, not a selected list.
    other_lists: dict[str, list[float]] = field(default_factory=dict)


def _nullable(value: float) -> float | None:
    return None if math.isnan(value) else value


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _check_schema(conn: sqlite3.Connection, path: Path) -> int:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ImpressionLogError(f"{path}: not an impressions log ({exc})") from exc
    if row is None:
        raise ImpressionLogError(f"{path}: not an impressions log (no schema version)")
    found = int(row[0])
    if found > SCHEMA_VERSION:
        raise ImpressionLogError(f"{path}: impressions log schema version {found} is newer "
                                 f"than this code's {SCHEMA_VERSION}")
    return found


class ImpressionLog:
    """The gateway's writer; see the module docstring. ``record`` from any thread."""

    def __init__(self, path: str | Path, retention_s: float = DEFAULT_RETENTION_S,
                 max_queue: int = 10_000, flush_interval_s: float = 0.2, *,
                 prune_interval_s: float = PRUNE_INTERVAL_S,
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        if not retention_s > 0 or max_queue < 1 or not flush_interval_s > 0:
            raise ValueError("retention_s and flush_interval_s must be positive, max_queue >= 1")
        self.path = Path(path)
        self.retention_s = float(retention_s)
        self._flush_interval = float(flush_interval_s)
        self._prune_interval = float(prune_interval_s)
        self._max_queue = int(max_queue)
        self._wake_at = max(1, self._max_queue // 2)
        self._queue: queue.Queue[tuple[Record, float]] = queue.Queue(maxsize=self._max_queue)
        self._counts = threading.Lock()
        self._accepted = 0
        self._dropped = 0
        self._last_drop_log = -math.inf
        self._done = threading.Condition()
        self._processed = 0  # written or failed: what flush waits for
        self._written = 0
        self._failed = 0
        self._duplicates = 0
        self._failure_kinds: set[str] = set()
        self._wake = threading.Event()
        self._stopping = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._conn = self._open(busy_timeout_ms)
        try:
            self._prune()
        except sqlite3.Error as exc:
            self._conn.close()
            raise ImpressionLogError(f"{self.path}: cannot apply retention: {exc}") from exc
        self._last_prune = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="impressions-writer",
                                        daemon=True)
        self._thread.start()

    def _open(self, busy_timeout_ms: int) -> sqlite3.Connection:
        try:
            # isolation_level=None: no implicit transactions; each batch is one explicit one.
            conn = sqlite3.connect(str(self.path), timeout=busy_timeout_ms / 1000,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ImpressionLogError(f"{self.path}: cannot open: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ImpressionLogError(f"{self.path}: cannot use WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT OR IGNORE INTO meta (key, value) "
                             "VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                _check_schema(conn, self.path)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            conn.close()
            raise ImpressionLogError(f"{self.path}: not usable as an impressions log: "
                                     f"{exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    # -- the request path ------------------------------------------------------------------

    def record(self, rec: Record) -> bool:
        """Queue ``rec`` for the writer; False (counted in ``dropped``) when the queue is full
        or the log is closed. Never blocks on I/O, never raises for lack of room."""
        if not isinstance(rec, Impression | Outcome | ShadowScore):
            raise TypeError(f"not an impressions log record: {type(rec).__name__}")
        if not self._closed:
            try:
                self._queue.put_nowait((rec, time.time()))
            except queue.Full:
                pass
            else:
                with self._counts:
                    self._accepted += 1
                if self._queue.qsize() >= self._wake_at:
                    self._wake.set()  # write now rather than at the next interval
                return True
        self._count_drop()
        return False

    def _count_drop(self) -> None:
        now = time.monotonic()
        with self._counts:
            self._dropped += 1
            dropped = self._dropped
            due = now - self._last_drop_log >= DROP_LOG_INTERVAL_S
            if due:
                self._last_drop_log = now
        if due:
            logger.warning("impressions log: record dropped (queue full or log closed)",
                           extra={"fields": {"path": str(self.path), "dropped": dropped,
                                             "max_queue": self._max_queue}})

    # -- counters and lifecycle ------------------------------------------------------------

    @property
    def written(self) -> int:
        """Records committed to the file."""
        return self._written

    @property
    def dropped(self) -> int:
        """Records refused by ``record`` (queue full, or the log closed)."""
        return self._dropped

    @property
    def failed(self) -> int:
        """Records lost because their batch could not be written."""
        return self._failed

    @property
    def duplicates(self) -> int:
        """Impressions not stored because their request id was already in the file (written
        counts them: they were handled, the first list with that id is kept)."""
        return self._duplicates

    @property
    def pending(self) -> int:
        """Records queued and not yet taken by the writer."""
        return self._queue.qsize()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record accepted so far is written (or failed); False on timeout."""
        with self._counts:
            target = self._accepted
        self._wake.set()
        with self._done:
            return self._done.wait_for(lambda: self._processed >= target, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer and close the file; idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True  # record() refuses from here on
        self.flush(timeout)
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("impressions log: writer did not stop in time",
                           extra={"fields": {"path": str(self.path)}})

    def __enter__(self) -> ImpressionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self._flush_interval)
                self._wake.clear()
                while True:
                    # Take only what is there now (a snapshot of the size), so a batch never
                    # chases a producer that keeps adding.
                    batch = [self._queue.get_nowait()
                             for _ in range(min(self._queue.qsize(), MAX_BATCH))]
                    if not batch:
                        break
                    self._write(batch)
                if time.monotonic() - self._last_prune >= self._prune_interval:
                    self._last_prune = time.monotonic()
                    self._guarded("retention", self._prune)
                if self._stopping and self._queue.empty():
                    return
        finally:
            self._conn.close()

    def _write(self, batch: list[tuple[Record, float]]) -> None:
        def commit() -> None:
            impressions, outcomes, shadows = [], [], []
            for rec, queued_at in batch:
                ts = rec.ts or queued_at
                if isinstance(rec, Impression):
                    impressions.append((rec.request_id, ts, rec.user_id, rec.experiment,
                                        rec.variant, rec.version, rec.configuration,
                                        int(bool(rec.degraded)), json.dumps(list(rec.items)),
                                        json.dumps(list(rec.teams))))
                elif isinstance(rec, Outcome):
                    outcomes.append((ts, rec.user_id, rec.item_id, rec.event, rec.weight,
                                     rec.follows_request_id))
                else:
                    shadows.append((rec.request_id, ts, rec.experiment, rec.served_variant,
                                    rec.shadow_variant, _nullable(float(rec.overlap)),
                                    _nullable(float(rec.correlation))))
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            # OR IGNORE: a request id seen twice (a client reusing its id) keeps the first
            # list rather than failing every other record of the batch.
            before = conn.total_changes
            conn.executemany("INSERT OR IGNORE INTO impressions (request_id, ts, user_id, "
                             "experiment, variant, version, configuration, degraded, items, "
                             "teams) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", impressions)
            ignored = len(impressions) - (conn.total_changes - before)
            conn.executemany("INSERT INTO outcomes (ts, user_id, item_id, event, weight, "
                             "follows_request_id) VALUES (?, ?, ?, ?, ?, ?)", outcomes)
            conn.executemany("INSERT INTO shadow (request_id, ts, experiment, served_variant, "
                             "shadow_variant, overlap, correlation) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)", shadows)
            conn.execute("COMMIT")  # the batch's one fsync
            self._duplicates += ignored

        ok = self._guarded(f"a batch of {len(batch)} record(s)", commit)
        with self._done:
            if ok:
                self._written += len(batch)
            else:
                self._failed += len(batch)
            self._processed += len(batch)
            self._done.notify_all()

    def _prune(self) -> None:
        cutoff = time.time() - self.retention_s
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            deleted = sum(conn.execute(f"DELETE FROM {table} WHERE ts < ?", (cutoff,)).rowcount
                          for table in TABLES)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if deleted:
            logger.info("impressions log: retention", extra={"fields": {
                "path": str(self.path), "deleted": deleted, "retention_s": self.retention_s}})

    def _guarded(self, what: str, work: Callable[[], None]) -> bool:
        """Run ``work``; on an error undo its transaction, log the first error of each kind
        and return False. The writer must outlive a full disk or a locked file."""
        try:
            work()
            return True
        except Exception as exc:  # any failure is counted; the thread goes on
            conn = self._conn
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            kind = f"{type(exc).__name__}: {exc}"
            if kind not in self._failure_kinds:
                self._failure_kinds.add(kind)
                logger.error("impressions log: could not write %s (further errors of this "
                             "kind are counted, not logged)", what,
                             extra={"fields": {"path": str(self.path), "error": kind}})
            return False


# -- reading ---------------------------------------------------------------------------------


def _connect_ro(path: Path) -> sqlite3.Connection:
    path = Path(path)
    if not path.is_file():
        raise ImpressionLogError(f"{path}: no such impressions log")
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True,
                               timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise ImpressionLogError(f"{path}: cannot open read-only: {exc}") from exc
    try:
        _check_schema(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def latest_experiment(paths: Sequence[Path]) -> str | None:
    """The experiment of the most recent impression that names one ("" when the logs only
    hold impressions served with no experiment running; None when they hold none)."""
    best: tuple[float, str] | None = None
    for path in paths:
        conn = _connect_ro(path)
        try:
            for query in ("SELECT experiment, ts FROM impressions WHERE experiment != '' "
                          "ORDER BY ts DESC LIMIT 1",
                          "SELECT experiment, ts FROM impressions ORDER BY ts DESC LIMIT 1"):
                row = conn.execute(query).fetchone()
                if row is not None:
                    # Any named experiment outranks the unnamed "no experiment" one.
                    key = (float(row[1]) if row[0] else -math.inf, row[0])
                    if best is None or key > best:
                        best = key
                    break
        except sqlite3.Error as exc:
            raise ImpressionLogError(f"{path}: cannot read: {exc}") from exc
        finally:
            conn.close()
    return None if best is None else best[1]


def read_log(paths: Sequence[Path], since: float = 0.0, until: float = math.inf,
             experiment: str | None = None, *,
             outcomes_until: float | None = None) -> LogContents:
    """Impressions and shadow scores with ``since <= ts < until`` (of ``experiment`` when
    given) from every file, and the outcomes of those impressions' users with ``since <= ts <
    outcomes_until`` (default ``until``; a report passes ``until`` plus its attribution window
    so that late clicks on the last impressions count).

    Outcomes are kept only for users with a selected impression: a user's click may be logged
    by another gateway than the one that served them, so the join is across files. An
    impression whose request id was already read from an earlier file is skipped.
    """
    out_until = until if outcomes_until is None else outcomes_until
    contents = LogContents()
    outcomes: list[Outcome] = []
    others: list[tuple[str, float]] = []
    seen: set[str] = set()
    exp_clause, exp_args = ("", ()) if experiment is None else (" AND experiment = ?",
                                                                 (experiment,))
    for path in paths:
        conn = _connect_ro(path)
        try:
            for row in conn.execute(
                    "SELECT request_id, user_id, experiment, variant, version, configuration, "
                    "degraded, items, teams, ts FROM impressions WHERE ts >= ? AND ts < ?"
                    + exp_clause, (since, until, *exp_args)):
                if row[0] in seen:
                    continue
                seen.add(row[0])
                contents.impressions.append(Impression(
                    row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]),
                    tuple(json.loads(row[7])), tuple(json.loads(row[8])), row[9]))
            for row in conn.execute(
                    "SELECT user_id, ts, request_id, experiment FROM impressions "
                    "WHERE ts < ?", (out_until,)):
                if row[2] not in seen and not (
                        since <= row[1] < until and experiment in (None, row[3])):
                    others.append((row[0], row[1]))
            for row in conn.execute(
                    "SELECT user_id, item_id, event, weight, ts, follows_request_id "
                    "FROM outcomes WHERE ts >= ? AND ts < ? ORDER BY seq", (since, out_until)):
                outcomes.append(Outcome(*row))
            for row in conn.execute(
                    "SELECT request_id, experiment, served_variant, shadow_variant, overlap, "
                    "correlation, ts FROM shadow WHERE ts >= ? AND ts < ?" + exp_clause,
                    (since, until, *exp_args)):
                contents.shadows.append(ShadowScore(row[0], row[1], row[2], row[3],
                                                    _nan(row[4]), _nan(row[5]), row[6]))
        except (sqlite3.Error, ValueError) as exc:
            raise ImpressionLogError(f"{path}: cannot read: {exc}") from exc
        finally:
            conn.close()
    users = {imp.user_id for imp in contents.impressions}
    contents.outcomes = [o for o in outcomes if o.user_id in users]
    for user, ts in others:
        if user in users:
            contents.other_lists.setdefault(user, []).append(ts)
    for times in contents.other_lists.values():
        times.sort()
    contents.impressions.sort(key=lambda r: r.ts)
    contents.outcomes.sort(key=lambda r: r.ts)  # stable: seq order within one file and ts
    contents.shadows.sort(key=lambda r: r.ts)
    logger.debug("impressions read", extra={"fields": {
        "files": len(paths), "impressions": len(contents.impressions),
        "outcomes": len(contents.outcomes), "shadows": len(contents.shadows)}})
    return contents
