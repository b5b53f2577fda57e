"""Retrieval's live state: the serving version plus every acknowledged write.

Writes (interactions, item upserts) are logged durably, then applied to the in-memory state,
and only then acknowledged, with group commit: concurrent writes share one commit (one fsync)
instead of paying one each. Callers queue their checked writes in arrival order; the caller at
the front of the queue leads: it takes the write lock, takes every write queued by then (up to
``max_batch``, its own first), commits them to the event log as one transaction, applies each
to memory in commit order, answers each caller with its sequence number, and wakes the new
front of the queue to lead the next batch. The others just wait for their answer. Nobody
waits for a hand-off to another thread when writes are few (a lone write leads its own batch
of one), and batches grow by themselves under load: whatever queues while one commit is on
disk forms the next.

Commit and apply happen under the write lock, so the log order is the apply order and,
outside the lock, everything committed has been applied. A batch that fails to commit fails
every one of its callers and applies nothing.

A new artifact version is loaded and brought up to date by replaying the log *outside* the
lock, then the few writes that arrived meanwhile are replayed under the lock and the version is
swapped in: no write is lost and readers never wait for a load or a commit.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from shortlist.retrieval.errors import (
    InvalidEventType,
    InvalidRequest,
    ItemNotFound,
    NotReady,
    StateUnavailable,
    WriteQueueFull,
)
from shortlist.retrieval.eventlog import (
    INTERACTIONS,
    Entry,
    EventLog,
    EventLogError,
    interaction_entry,
    item_entry,
)
from shortlist.retrieval.retriever import Retriever
from shortlist.retrieval.state_base import ServingVersion, apply_record, event_type

logger = logging.getLogger(__name__)

# Writes waiting for their answer (queued, or in the batch being committed); one more is
# refused with WriteQueueFull (RESOURCE_EXHAUSTED). Every waiting write holds a request thread,
# and the server's pool is far smaller (8 by default), so the bound only trips with a much
# larger pool or a stalled disk, and then it sheds load at once instead of stacking callers
# behind the disk.
MAX_QUEUE = 256
# Writes per commit. One fsync is shared by the whole batch, so past a few dozen the saving per
# write is small, while the write lock (which a version swap also needs) is held while the
# whole batch is applied.
MAX_BATCH = 64


@dataclass(eq=False)
class _Write:
    """A checked write waiting for its answer: what to log, what to apply, who waits."""

    entry: Entry
    args: tuple  # for Retriever.apply_interaction / apply_item
    wake: threading.Condition  # on the state's queue mutex: answered, or now at the front
    done: bool = False
    answer: object = None  # (seq, result), or the exception its caller raises

    @property
    def is_interaction(self) -> bool:
        return self.entry.table == INTERACTIONS

    @property
    def item_id(self) -> str:
        return self.args[1] if self.is_interaction else self.args[0]


@dataclass
class Prepared:
    """A loaded version with the log replayed up to these sequence numbers."""

    retriever: Retriever
    items_seq: int
    interactions_seq: int


class RetrievalState(ServingVersion):
    """The serving version and the write path onto it; see the module docstring.

    ``max_queue`` and ``max_batch`` bound the writes waiting and the writes per commit;
    ``close`` drains the queue.
    """

    def __init__(self, log: EventLog, max_queue: int = MAX_QUEUE,
                 max_batch: int = MAX_BATCH) -> None:
        if max_queue < 1 or max_batch < 1:
            raise ValueError("max_queue and max_batch must be at least 1")
        self.log = log
        self.max_queue = max_queue
        self.max_batch = max_batch
        # The write lock: held by a batch's leader while it commits and applies the batch, and
        # by swap while it replays the last writes onto the new version.
        self._lock = threading.Lock()
        self._retriever: Retriever | None = None
        # Guards the queue. Taken after the write lock, never while waiting for it.
        self._mutex = threading.Lock()
        # Unanswered writes in arrival order; the front one leads, its batch is the front part.
        self._queue: deque[_Write] = deque()
        self._drained = threading.Condition(self._mutex)  # the queue has become empty
        self._closing = False
        # Batches committed and the writes in them (under the write lock): their ratio is the
        # mean batch size, what group commit saves in fsyncs.
        self.commits = 0
        self.committed_writes = 0

    @property
    def queued(self) -> int:
        """Writes waiting for their answer (queued, or in the batch being committed)."""
        with self._mutex:
            return len(self._queue)

    # -- versions ---------------------------------------------------------------------------

    def _replay(self, retriever: Retriever, items_after: int,
                interactions_after: int) -> tuple[int, int]:
        for rec in self.log.items(items_after):
            apply_record(retriever, rec)
            items_after = rec.seq
        skipped = 0
        for rec in self.log.interactions(interactions_after):
            # False: the item (or event type) was accepted by another version: keep the
            # log, skip
            skipped += not apply_record(retriever, rec)
            interactions_after = rec.seq
        if skipped:
            logger.warning("replay skipped interactions with unknown items or event types",
                           extra={"fields": {"skipped": skipped, "version": retriever.version}})
        return items_after, interactions_after

    def prepare(self, retriever: Retriever, events_through: dict | None) -> Prepared:
        """Replay what the version was not trained on (it records what it consumed)."""
        start = time.perf_counter()
        through = events_through or {}
        items_seq, inter_seq = self._replay(retriever, int(through.get("items_through", 0)),
                                            int(through.get("interactions_through", 0)))
        logger.info("event log replayed", extra={"fields": {
            "version": retriever.version, "items_seq": items_seq,
            "interactions_seq": inter_seq,
            "seconds": round(time.perf_counter() - start, 3)}})
        return Prepared(retriever, items_seq, inter_seq)

    def swap(self, prepared: Prepared) -> None:
        # Under the write lock no batch is half done: everything committed has been applied to
        # the old version, and is in the log for the replay onto the new one.
        with self._lock:
            self._replay(prepared.retriever, prepared.items_seq, prepared.interactions_seq)
            old = self._retriever
            self._retriever = prepared.retriever
        logger.info("version swapped in", extra={"fields": {
            "version": prepared.retriever.version,
            "previous": old.version if old is not None else None}})

    # -- writes -----------------------------------------------------------------------------

    def wait_applied(self, token: str, timeout_s: float | None = None) -> None:
        """Read-your-write tokens are for the shared backend (``retrieval.shared``): here one
        process applies every write before acknowledging it, so any token is satisfied."""
        if token:
            from shortlist.common.eventid import StreamId
            try:
                StreamId.parse(token)
            except ValueError as exc:
                raise InvalidRequest(f"after_event_id: {exc}") from exc

    def record_interaction(self, user_id: str, item_id: str, weight: float,
                           timestamp: int, client_event_id: str = "",
                           event: str = "") -> tuple[int, int, bool]:
        """Durably log, then apply; returns (sequence, user's distinct-item count, whether it
        was a retry) once both are done. A write whose ``client_event_id`` was logged before is
        answered with the first write's sequence and not logged or applied again. Raises,
        without logging, ItemNotFound for an item the catalog lacks and InvalidEventType for
        an event type the serving version's table lacks; the type is logged normalised."""
        # Early refusals, before taking a queue slot. The batch's leader checks again, in
        # commit order: the version may change meanwhile, and an upsert queued ahead of this
        # write may add the item.
        retriever = self.retriever
        if item_id not in retriever.models.catalog.vocab:
            raise ItemNotFound(f"unknown item_id {item_id!r}")
        event = event_type(retriever, event)
        return self._submit(interaction_entry(user_id, item_id, weight, timestamp,
                                              client_event_id, event),
                            (user_id, item_id, weight, timestamp, event))

    def upsert_item(self, item_id: str, title: str, categories: list[str],
                    text: str) -> tuple[int, bool]:
        """Durably log, then apply; returns (sequence, whether the item is new)."""
        if not self.ready:  # refused before taking a queue slot
            raise NotReady("models are still loading")
        return self._submit(item_entry(item_id, title, categories, text),
                            (item_id, title, list(categories), text))

    def _submit(self, entry: Entry, args: tuple) -> tuple:
        with self._mutex:
            if self._closing:
                raise WriteNotLogged(f"{self.log.path}: retrieval state is closed")
            if len(self._queue) >= self.max_queue:
                raise WriteQueueFull(f"{len(self._queue)} writes are waiting for the event "
                                     "log; retry in a moment")
            write = _Write(entry, args, threading.Condition(self._mutex))
            self._queue.append(write)
            # No timeout: every queued write is answered (result or error) by the leader of its
            # batch, and a caller that gave up could not take its write back anyway.
            while not write.done and self._queue[0] is not write:
                write.wake.wait()
        if not write.done:
            self._lead(write)  # at the front: commit for everyone queued so far
        if isinstance(write.answer, BaseException):
            raise write.answer
        return write.answer

    def close(self) -> None:
        """Refuse new writes, wait until every queued one is committed, applied and answered,
        then close the log. Idempotent."""
        with self._mutex:
            self._closing = True
            while self._queue:
                self._drained.wait()
        self.log.close()

    # -- a batch, committed by its leader ---------------------------------------------------

    def _lead(self, own: _Write) -> None:
        batch: list[_Write] = []
        answers: list[tuple[_Write, object]] = []
        try:
            # The write lock first, then the batch: whatever queued up while the lock was busy
            # (the previous commit, a swap) joins this one commit.
            with self._lock:
                with self._mutex:
                    batch = list(itertools.islice(self._queue, self.max_batch))
                answers = self._commit_and_apply(batch)
        except BaseException as exc:  # a bug (or an interrupt): answer everyone, strand nobody
            logger.exception("event log write failed unexpectedly")
            batch = batch or [own]  # failed before taking the batch: own is the front
            answers = [(w, _error(WriteNotLogged, f"write failed, not acknowledged: {exc!r}",
                                  exc)) for w in batch]
            if not isinstance(exc, Exception):
                raise
        finally:
            # Handed out after the write lock is released: the next leader need not wait for
            # the wake-ups.
            with self._mutex:
                for write, answer in answers:
                    write.answer, write.done = answer, True
                    write.wake.notify()
                for _ in batch:  # the batch is the front of the queue: only leaders pop
                    self._queue.popleft()
                if self._queue:
                    self._queue[0].wake.notify()  # the next leader
                else:
                    self._drained.notify_all()

    def _commit_and_apply(self, batch: list[_Write]) -> list[tuple[_Write, object]]:
        """Each write with its answer: (seq, result) or the exception its caller raises."""
        retriever = self._retriever  # set: writes are only queued once a version is loaded
        vocab = retriever.models.catalog.vocab
        answers: list[tuple[_Write, object]] = []
        logged: list[_Write] = []
        upserted: set[str] = set()
        retried: dict[str, list[_Write]] = {}  # by client event id, answered after the commit
        for write in batch:
            if write.is_interaction:
                if write.item_id not in vocab and write.item_id not in upserted:
                    # refused before logging, as the caller's early check would have
                    answers.append((write, ItemNotFound(f"unknown item_id {write.item_id!r}")))
                    continue
                try:  # the version may have changed since the caller's check
                    event_type(retriever, write.args[4])
                except InvalidEventType as exc:
                    answers.append((write, exc))
                    continue
                cid = write.entry.client_event_id
                if cid and (cid in retried or self._client_seq(cid) is not None):
                    retried.setdefault(cid, []).append(write)
                    continue
                if cid:
                    retried[cid] = []
            else:
                upserted.add(write.item_id)
            logged.append(write)
        try:
            seqs = self.log.append_batch([w.entry for w in logged])
        except EventLogError as exc:
            logger.error("event log commit failed; the batch is refused", extra={"fields": {
                "writes": len(logged), "error": str(exc)}})
            # One exception per caller: an exception object raised in several threads at
            # once would have its traceback rewritten under them.
            return answers + [(w, _error(WriteNotLogged, str(exc), exc.__cause__ or exc))
                              for w in logged + [r for rs in retried.values() for r in rs]]
        if seqs:
            self.commits += 1
            self.committed_writes += len(seqs)
        for write, seq in zip(logged, seqs, strict=True):
            try:
                if write.is_interaction:
                    result = (retriever.apply_interaction(*write.args), False)
                else:
                    result = retriever.apply_item(*write.args)
            except Exception as exc:
                # Logged but not applied: the caller gets the error (as before group commit);
                # a restart replays the write from the log.
                logger.exception("logged write could not be applied",
                                 extra={"fields": {"seq": seq, "table": write.entry.table}})
                answers.append((write, exc))
            else:
                answers.append((write, (seq, *result) if write.is_interaction
                                else (seq, result)))
        for cid, writes in retried.items():
            for write in writes:  # the first write's seq; the state as it is now
                seq = self._client_seq(cid)
                answers.append((write, (seq, retriever.history_length(write.args[0]), True)))
        return answers

    def _client_seq(self, client_event_id: str) -> int | None:
        try:
            return self.log.client_event_seq(client_event_id)
        except Exception:  # unreadable: treat as new; the commit's unique key still holds
            logger.exception("client event id lookup failed")
            return None


class WriteNotLogged(StateUnavailable, EventLogError):
    """The event log could not commit the write: not acknowledged, the caller may retry."""


def _error(kind: type[Exception], message: str, cause: BaseException) -> Exception:
    err = kind(message)
    err.__cause__ = cause
    return err
