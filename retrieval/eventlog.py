"""The durable log of online writes (interactions and item upserts), one SQLite file.

The retrieval server appends every accepted write here and acknowledges the client only after
the append has returned; on restart it replays the log (or the part newer than what the
deployed artifact was trained on, see ``training.eventlog_data``), and training folds it into
the data.

Durability. The database runs in WAL mode with ``PRAGMA synchronous=FULL``: each call of
``append_batch`` is one transaction, and SQLite fsyncs the WAL before the commit returns. So
an acknowledged write survives the process being killed (even ``kill -9``: the commit is in
the OS by then) and, as far as SQLite and the disk honour fsync, a power loss.
(``synchronous=NORMAL`` would survive a process crash but could lose the last commits on power
loss.) ``fullfsync`` is also requested; it only matters on macOS, where a plain fsync does not
reach the platter.

Group commit. One commit costs one fsync however many rows it holds, so the server
(``retrieval.online``) hands every write waiting at that moment to one ``append_batch``: the
batch commits entirely or not at all, and its seqs are returned only once it is durable. A
batch that fails (disk full, I/O error) raises ``EventLogError`` with nothing of it logged,
so none of its writes may be acknowledged. ``append_interaction`` and ``append_item`` are
batches of one.

Sequence numbers. ``seq`` is an ``AUTOINCREMENT`` key, strictly increasing in commit order
and never reused for a committed row, even a deleted one. (A rolled-back batch's numbers are
handed out again, which is harmless: nobody ever saw them.) SQLite has one writer at a time
and assigns the key inside the write transaction, so a reader that has seen ``seq = n`` will
never later see a smaller, newly committed one: "replay everything after n" misses nothing.
Within a batch, rows get their seqs in the order given.

Threads. One connection (``check_same_thread=False``) guarded by a lock. SQLite serialises
writers per database anyway, so a connection per thread would add no write parallelism, only
``SQLITE_BUSY`` waits between the threads' connections and one open file set per thread (the
gRPC pool's threads are long-lived, so those would never be closed). Reads are paged
(``PAGE`` rows per query, the lock taken per page), so an iterator holds no lock between the
rows it yields: a caller can append while iterating, and a long replay never blocks writers
for more than one page. Other processes (e.g. training reading the log) may open the same
file concurrently: WAL lets readers and the writer proceed together, and ``busy_timeout``
covers the brief exclusive moments (checkpoints, schema creation).

Nothing is validated beyond what storing a value exactly requires: ids, titles and text are
stored as given (empty strings included), categories as a JSON list in the given order. A
value SQLite cannot store exactly raises instead of being coerced: a non-``str`` id or title
(SQLite would turn ``5`` into ``'5'``), a NaN weight (SQLite would store NULL), a
non-integral timestamp, categories given as one string (it would be split into characters).
Those checks run when a write is built (``interaction_entry``, ``item_entry``), in the
caller's thread, so a bad value is refused before it can join, and fail, a batch.

Event types. An interaction carries its type (``event``: "dislike", "purchase", ...; "" for
untyped), stored as the server checked and normalised it: the log records what happened, and
whichever version replays it weighs it by its own table. Schema 1 (before types) lacked the
column; opening such a log adds it (``ALTER TABLE``, every old row untyped) and records schema
2, after which code of schema 1 refuses the file rather than replay a dislike as a like.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import operator
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: interactions.event
INTERACTIONS = "interactions"
ITEMS = "items"
TABLES = (INTERACTIONS, ITEMS)
PAGE = 1000
BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS interactions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT,
    item_id TEXT,
    weight REAL,
    timestamp INTEGER,
    received_at REAL,
    event TEXT NOT NULL DEFAULT ''
);
/* client event ids of logged interactions: a retried write is answered, not logged again */
CREATE TABLE IF NOT EXISTS client_events (
    client_event_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT,
    title TEXT,
    categories TEXT /* JSON list */,
    text TEXT,
    received_at REAL
);
"""


class EventLogError(Exception):
    """The log cannot be opened with the required guarantees, is of a newer schema, is
    closed, or a batch could not be committed (then none of it was logged)."""


@dataclass(frozen=True, slots=True)
class Interaction:
    seq: int | str  # the log's seq; a stream id ("<ms>-<n>") when read from Redis
    user_id: str
    item_id: str
    weight: float
    timestamp: int
    received_at: float  # server clock (unix seconds) when the write was logged
    event: str = ""  # its type, normalised; "" untyped (and every write logged before types)


@dataclass(frozen=True, slots=True)
class ItemRecord:
    seq: int | str
    item_id: str
    title: str
    categories: list[str]
    text: str
    received_at: float


_INSERT = {
    INTERACTIONS: "INSERT INTO interactions (user_id, item_id, weight, timestamp, event, "
                  "received_at) VALUES (?, ?, ?, ?, ?, ?)",
    ITEMS: "INSERT INTO items (item_id, title, categories, text, received_at) "
           "VALUES (?, ?, ?, ?, ?)",
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One write, checked and converted to the row it is stored as (without ``received_at``,
    which the commit stamps). Build it with ``interaction_entry`` or ``item_entry``."""

    table: str
    values: tuple
    client_event_id: str = ""  # the caller's id for the write: logged once however retried


def interaction_entry(user_id: str, item_id: str, weight: float, timestamp: int,
                      client_event_id: str = "", event: str = "") -> Entry:
    """An interaction as it will be logged; raises on a value SQLite cannot store exactly.

    ``event`` is stored as given: the server checks and normalises it against the serving
    version's table first (``state_base.event_type``), since only it knows the table.
    """
    return Entry(INTERACTIONS, (_text("user_id", user_id), _text("item_id", item_id),
                                _weight(weight), operator.index(timestamp),
                                _text("event", event)),
                 _text("client_event_id", client_event_id))


def item_entry(item_id: str, title: str, categories: Iterable[str], text: str) -> Entry:
    """An item upsert (the full new state of the item) as it will be logged."""
    if isinstance(categories, str | bytes):
        raise TypeError("categories must be a list of strings, not one string")
    return Entry(ITEMS, (_text("item_id", item_id), _text("title", title),
                         json.dumps(list(categories), ensure_ascii=False),
                         _text("text", text)))


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, got {type(value).__name__}")
    return value


class EventLog:
    """Append-only log of interactions and item upserts; see the module docstring."""

    def __init__(self, path: str | Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # isolation_level=None: the sqlite3 module never opens an implicit transaction behind
        # our back; append_batch begins and commits its own, one per batch.
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            str(self.path), timeout=busy_timeout_ms / 1000, isolation_level=None,
            check_same_thread=False)
        try:
            self._setup(busy_timeout_ms)
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    def _setup(self, busy_timeout_ms: int) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise EventLogError(f"{self.path}: cannot use WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA fullfsync = ON")
        conn.execute("PRAGMA checkpoint_fullfsync = ON")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                         (str(SCHEMA_VERSION),))
            found = int(conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
            if found > SCHEMA_VERSION:
                raise EventLogError(f"{self.path}: schema version {found} is newer than "
                                    f"this code's {SCHEMA_VERSION}")
            if found < SCHEMA_VERSION:
                self._migrate(found)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _migrate(self, found: int) -> None:
        """Bring a log of an older schema up to this one, inside the opening transaction (so
        two processes opening it at once migrate it once, and a failure changes nothing)."""
        conn = self._conn
        columns = {row[1] for row in conn.execute("PRAGMA table_info(interactions)")}
        if "event" not in columns:  # schema 1: written before event types
            conn.execute("ALTER TABLE interactions ADD COLUMN event TEXT NOT NULL DEFAULT ''")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                     (str(SCHEMA_VERSION),))
        logger.info("event log migrated", extra={"fields": {
            "path": str(self.path), "from": found, "to": SCHEMA_VERSION}})

    # -- context manager / lifecycle -------------------------------------------------------

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; idempotent. Every acknowledged append is already durable."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise EventLogError(f"{self.path}: event log is closed")
        return self._conn

    # -- writes ----------------------------------------------------------------------------

    def append_batch(self, entries: Sequence[Entry]) -> list[int]:
        """Log ``entries`` in one transaction, in order; their seqs once the commit is durable.

        All or nothing: on failure the transaction is rolled back and ``EventLogError`` is
        raised (the SQLite error as its cause), so no entry of the batch is in the log.
        """
        if not entries:
            return []
        for entry in entries:
            if entry.table not in _INSERT:
                raise ValueError(f"not an event log entry: {entry!r}")
        with self._lock:
            conn = self._connection()
            try:
                if conn.in_transaction:  # a failed batch whose rollback failed too: undo it
                    conn.execute("ROLLBACK")
                # IMMEDIATE: take the write lock now (waiting up to busy_timeout for another
                # process), not halfway through the batch.
                conn.execute("BEGIN IMMEDIATE")
                received_at = time.time()  # one per batch, under the lock: non-decreasing in seq
                seqs = [int(conn.execute(_INSERT[e.table], (*e.values, received_at)).lastrowid)
                        for e in entries]
                for e, seq in zip(entries, seqs, strict=True):
                    if e.client_event_id:  # a duplicate id fails (and undoes) the batch
                        conn.execute("INSERT INTO client_events VALUES (?, ?)",
                                     (e.client_event_id, seq))
                conn.execute("COMMIT")  # the one fsync of the batch
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise EventLogError(f"{self.path}: could not commit a batch of {len(entries)} "
                                    f"write(s), none of them was logged: {exc}") from exc
            except BaseException:
                self._rollback(conn)
                raise
            return seqs

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        # SQLite rolls back by itself on some errors (SQLITE_FULL, SQLITE_IOERR): only undo
        # what is still open. A rollback that fails leaves the transaction to the next batch,
        # which undoes it before starting.
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def append_interaction(self, user_id: str, item_id: str, weight: float,
                           timestamp: int, event: str = "") -> int:
        """Log one interaction (a batch of one); returns its seq once the commit is durable."""
        return self.append_batch([interaction_entry(user_id, item_id, weight, timestamp,
                                                    event=event)])[0]

    def append_item(self, item_id: str, title: str, categories: Iterable[str],
                    text: str) -> int:
        """Log one item upsert (the full new state of the item); returns its seq, durable."""
        return self.append_batch([item_entry(item_id, title, categories, text)])[0]

    # -- reads -----------------------------------------------------------------------------

    def interactions(self, after_seq: int = 0) -> Iterator[Interaction]:
        """Interactions with ``seq > after_seq``, in seq order (see the module docstring)."""
        for row in self._rows("SELECT seq, user_id, item_id, weight, timestamp, received_at, "
                              "event FROM interactions WHERE seq > ? ORDER BY seq LIMIT ?",
                              after_seq):
            yield Interaction(*row)

    def items(self, after_seq: int = 0) -> Iterator[ItemRecord]:
        """Item upserts with ``seq > after_seq``, in seq order."""
        for seq, item_id, title, cats, text, received_at in self._rows(
                "SELECT seq, item_id, title, categories, text, received_at "
                "FROM items WHERE seq > ? ORDER BY seq LIMIT ?", after_seq):
            yield ItemRecord(seq, item_id, title, json.loads(cats), text, received_at)

    def _rows(self, sql: str, after_seq: int) -> Iterator[tuple]:
        after = operator.index(after_seq)
        while True:
            with self._lock:
                page = self._connection().execute(sql, (after, PAGE)).fetchall()
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1][0]

    def client_event_seq(self, client_event_id: str) -> int | None:
        """The seq of the logged write that carried ``client_event_id``, if any."""
        with self._lock:
            row = self._connection().execute(
                "SELECT seq FROM client_events WHERE client_event_id = ?",
                (client_event_id,)).fetchone()
        return int(row[0]) if row else None

    def last_seq(self, table: str) -> int:
        """Highest seq in ``table`` ("interactions" or "items"); 0 if it is empty."""
        if table not in TABLES:
            raise ValueError(f"table must be one of {TABLES}, got {table!r}")
        with self._lock:
            value = self._connection().execute(f"SELECT MAX(seq) FROM {table}").fetchone()[0]
        return int(value or 0)

    def pragmas(self) -> dict[str, int | str]:
        """The durability settings in force on this connection (for checks and diagnostics)."""
        with self._lock:
            conn = self._connection()
            return {name: conn.execute(f"PRAGMA {name}").fetchone()[0]
                    for name in ("journal_mode", "synchronous", "busy_timeout")}


def _weight(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"weight must be a real number, got {type(value).__name__}")
    weight = float(value)
    if math.isnan(weight):
        raise ValueError("weight is NaN, which SQLite would store as NULL")
    return weight
