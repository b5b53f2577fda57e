"""Retrieval's live state on the shared stream: what replicas use instead of ``online``.

Every replica applies the same writes in the same order: a write is appended to the Redis
stream (``retrieval.stream``) and acknowledged once Redis has it; one tailer thread per
replica reads the stream after the last id it applied and applies each entry, the writer's own
replica included. So no replica applies a write that is not durable, and all of them converge
on the stream's order.

Read your writes. A write returns its stream id. A read that carries one (``wait_applied``)
waits, up to ``consistency_wait_s``, until this replica has applied through it, so a click
changes the very next response whichever replica serves it. A replica that cannot catch up in
time (Redis unreachable, far behind) refuses with ``Lagging`` (UNAVAILABLE), which the
gateway's channel retries on another replica. The writer waits for its own replica to apply
the write before answering, so the history length it returns includes the write.

Redis down. Reads keep serving from memory (whatever was applied); the tailer retries with
backoff and, once Redis is back, resumes after its last applied id: nothing acknowledged is
skipped, since the ack came only after Redis had synced the entry. Writes fail at once with
``StateUnavailable`` (UNAVAILABLE), never acknowledged.

Versions. A new artifact version is prepared outside the lock by replaying the stream after
the id its training read through (the manifest records it); ``swap`` replays, under the apply
lock, whatever the tailer applied to the old version meanwhile, then switches. The tailer
applies only entries newer than the last applied id, so nothing is applied twice.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from shortlist.common.eventid import StreamId
from shortlist.retrieval.errors import (
    InvalidRequest,
    ItemNotFound,
    Lagging,
    StateUnavailable,
)
from shortlist.retrieval.eventlog import interaction_entry, item_entry
from shortlist.retrieval.retriever import Retriever
from shortlist.retrieval.state_base import ServingVersion, apply_record, event_type
from shortlist.retrieval.stream import StreamError, StreamLog

logger = logging.getLogger(__name__)

# Longest a tailer's read blocks on Redis: how quickly close() is noticed.
BLOCK_MS = 500
# Backoff between failed reads while Redis is unreachable.
RETRY_S = (0.05, 2.0)


@dataclass
class Prepared:
    """A loaded version with the stream applied through ``applied``."""

    retriever: Retriever
    applied: StreamId


class SharedState(ServingVersion):
    """The serving version, kept current from the shared stream; see the module docstring.

    ``consistency_wait_s`` bounds how long a read waits for a write it must see.
    """

    def __init__(self, log: StreamLog, consistency_wait_s: float = 0.5) -> None:
        self.log = log
        self.consistency_wait_s = consistency_wait_s
        self._lock = threading.Lock()  # applying entries, swapping versions
        self._applied_cond = threading.Condition(threading.Lock())
        self._retriever: Retriever | None = None
        self._applied = StreamId.ZERO
        self._closed = threading.Event()
        self._tailer: threading.Thread | None = None
        self.connected = True  # the tailer's last read reached Redis
        self.commits = 0  # writes acknowledged through this replica (no batching here)
        self.committed_writes = 0

    @property
    def queued(self) -> int:
        return 0  # each write is one Redis call: nothing queues in this process

    @property
    def applied(self) -> StreamId:
        """The last stream id applied to the serving version."""
        return self._applied

    # -- versions ---------------------------------------------------------------------------

    def _apply(self, retriever: Retriever, record) -> None:
        if not apply_record(retriever, record):
            # The item (or the event type) was accepted against another replica's version (an
            # older one, an upsert this version predates, a type its table lacks): keep the
            # stream, skip it here, as replay does.
            logger.warning("stream entry skipped: unknown item or event type", extra={
                "fields": {"item_id": record.item_id, "event": getattr(record, "event", ""),
                           "version": retriever.version}})

    def _replay(self, retriever: Retriever, after: StreamId,
                through: StreamId | None = None) -> StreamId:
        for entry_id, record in self.log.entries(after, through):
            self._apply(retriever, record)
            after = entry_id
        return after

    def prepare(self, retriever: Retriever, events_through: dict | None) -> Prepared:
        """Replay the stream after what the version was trained on (its manifest says)."""
        start = time.perf_counter()
        through = (events_through or {}).get("stream_through") or str(StreamId.ZERO)
        try:
            marker = self.log.archive_marker()
            if marker and StreamId.parse(through) < StreamId.parse(marker["through"]):
                # the entries in between left the stream for the archive: replaying what is
                # left would serve this version without them
                raise StateUnavailable(
                    f"version {retriever.version} was trained through stream id {through}, "
                    f"but the stream was compacted through {marker['through']} (archive "
                    f"{marker['archive']}): serve a version fitted since")
            applied = self._replay(retriever, StreamId.parse(through))
        except StreamError as exc:
            raise StateUnavailable(f"cannot replay the shared stream onto version "
                                   f"{retriever.version}: {exc}") from exc
        logger.info("stream replayed", extra={"fields": {
            "version": retriever.version, "applied": str(applied),
            "seconds": round(time.perf_counter() - start, 3)}})
        return Prepared(retriever, applied)

    def swap(self, prepared: Prepared) -> None:
        with self._lock:
            if prepared.applied < self._applied:  # the tailer is ahead of the replay
                try:
                    prepared.applied = self._replay(prepared.retriever, prepared.applied,
                                                    self._applied)
                except StreamError as exc:
                    raise StateUnavailable(f"cannot bring version {prepared.retriever.version}"
                                           f" up to date: {exc}") from exc
            old = self._retriever
            self._retriever = prepared.retriever
            self._set_applied(max(self._applied, prepared.applied))
        logger.info("version swapped in", extra={"fields": {
            "version": prepared.retriever.version, "applied": str(self._applied),
            "previous": old.version if old is not None else None}})
        if self._tailer is None:
            self._tailer = threading.Thread(target=self._tail, name="stream-tailer",
                                            daemon=True)
            self._tailer.start()

    def _set_applied(self, entry_id: StreamId) -> None:
        with self._applied_cond:
            self._applied = entry_id
            self._applied_cond.notify_all()

    # -- the tailer -------------------------------------------------------------------------

    def _tail(self) -> None:
        backoff = RETRY_S[0]
        while not self._closed.is_set():
            try:
                entries = self.log.read(self._applied, block_ms=BLOCK_MS)
            except StreamError as exc:
                if self.connected:
                    logger.warning("shared stream unreachable; serving from memory, retrying",
                                   extra={"fields": {"error": str(exc)}})
                self.connected = False
                self._closed.wait(backoff)
                backoff = min(backoff * 2, RETRY_S[1])
                continue
            if not self.connected:
                logger.info("shared stream reachable again", extra={"fields": {
                    "resuming_after": str(self._applied)}})
            self.connected, backoff = True, RETRY_S[0]
            if not entries:
                continue
            with self._lock:
                retriever = self._retriever
                last = self._applied
                for entry_id, record in entries:
                    if last < entry_id:  # a swap may have applied it already
                        self._apply(retriever, record)
                        last = entry_id
                self._set_applied(last)

    def wait_applied(self, token: str, timeout_s: float | None = None) -> None:
        """Return once the entry ``token`` names is applied here; Lagging after the wait."""
        try:
            target = StreamId.parse(token)
        except ValueError as exc:
            raise InvalidRequest(f"after_event_id: {exc}") from exc
        if not target < self._applied and target != self._applied:
            deadline = time.monotonic() + (self.consistency_wait_s if timeout_s is None
                                           else timeout_s)
            with self._applied_cond:
                while self._applied < target:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise Lagging(f"this replica has applied the shared stream through "
                                      f"{self._applied}, not yet {target}; another replica "
                                      "may have")
                    self._applied_cond.wait(left)

    # -- writes -----------------------------------------------------------------------------

    def _write(self, entry, client_event_id: str) -> tuple[str, bool]:
        try:
            entry_id, appended = self.log.append(entry, client_event_id)
        except StreamError as exc:
            raise StateUnavailable(f"shared state is unavailable, the write was not "
                                   f"acknowledged (retry it, with a client_event_id to be "
                                   f"safe): {exc}") from exc
        self.commits += 1
        self.committed_writes += 1
        try:
            self.wait_applied(entry_id, timeout_s=max(self.consistency_wait_s, 2.0))
        except Lagging:
            # Durable and acknowledged all the same: every replica will apply it.
            logger.warning("write acknowledged before this replica applied it",
                           extra={"fields": {"event_id": entry_id}})
        return entry_id, appended

    def record_interaction(self, user_id: str, item_id: str, weight: float, timestamp: int,
                           client_event_id: str = "", event: str = "") -> tuple[str, int, bool]:
        """Append durably and apply here; (event id, the user's distinct-item count, whether
        it was a retry of an acknowledged write). Without appending: ItemNotFound for an item
        this replica's catalog lacks, InvalidEventType for an event type its serving version's
        table lacks. The type is appended normalised."""
        retriever = self.retriever
        if item_id not in retriever.models.catalog.vocab:
            raise ItemNotFound(f"unknown item_id {item_id!r}")
        event = event_type(retriever, event)
        entry_id, appended = self._write(interaction_entry(user_id, item_id, weight, timestamp,
                                                           event=event), client_event_id)
        return entry_id, self.retriever.history_length(user_id), not appended

    def upsert_item(self, item_id: str, title: str, categories: list[str],
                    text: str) -> tuple[str, bool]:
        """Append durably and apply here; (event id, whether the item was new)."""
        created = item_id not in self.retriever.models.catalog.vocab
        entry_id, _ = self._write(item_entry(item_id, title, categories, text), "")
        return entry_id, created

    def close(self) -> None:
        """Stop the tailer; every acknowledged write is already in Redis. Idempotent."""
        self._closed.set()
        if self._tailer is not None:
            self._tailer.join(timeout=BLOCK_MS / 1000 + 2)
        self.log.close()
