"""The one open-loop load driver: `shortlist-bench`, the overload search and perf all use it.

Open loop: request ``i`` is due at ``start + i / rate`` whatever happened to the earlier ones,
so a slow server shows up as queueing in the latencies instead of slowing the client down (a
closed loop politely waits, and hides it).

Latency is measured from each request's *due* time, not from when it actually left. When the
sending thread falls behind (starved of CPU by the servers on the same cores, or held up by
the GIL in the answer callbacks), requests leave late; timing them from the send would drop
exactly the delay a real client at that rate would have suffered (coordinated omission). How
late each one left is kept beside it as ``send_lag_ms``, so a report can say how much of a
tail was the client's own.

At most ``max_in_flight`` requests await an answer. One that falls due past that bound is not
delayed (that would close the loop): it is recorded at once as ``CLIENT_SATURATED``. Every due
request gets exactly one ``Record``; one still unanswered when the wait ends (its deadline
plus ``grace_s``, which gRPC should make impossible) is ``CLIENT_UNANSWERED``.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import grpc
import numpy as np

from shortlist.client.channel import open_channel

CLIENT_SATURATED = "CLIENT_SATURATED"
CLIENT_UNANSWERED = "CLIENT_UNANSWERED"
# The first request is due this long after the call, so setting up does not make it late.
START_DELAY_S = 0.01


@dataclass(frozen=True)
class Record:
    """What happened to one due request."""

    index: int
    due_s: float  # when it was due, in seconds after the run's start
    latency_ms: float  # from its due time to its answer (or refusal)
    status: str  # a gRPC status code name, CLIENT_SATURATED or CLIENT_UNANSWERED
    timings_ms: dict[str, float]  # the response's own ``timings_ms`` ({} if none or failed)
    send_lag_ms: float = 0.0  # how long after its due time it left (or was refused)
    observed: Any = None  # what ``observe`` returned for its response (answered calls only)


@dataclass
class LoadResult:
    rate: float
    max_in_flight: int
    started: float  # perf_counter() of the first due time
    finished: float  # perf_counter() when the last answer came (or the wait gave up)
    records: list[Record]  # one per due request, in due order

    @property
    def offered(self) -> int:
        return len(self.records)

    @property
    def duration_s(self) -> float:
        return max(1e-9, self.finished - self.started)

    def codes(self) -> Counter[str]:
        return Counter(r.status for r in self.records)

    @property
    def ok(self) -> int:
        return sum(r.status == "OK" for r in self.records)

    def latencies_ms(self, status: str = "OK") -> np.ndarray:
        return np.asarray([r.latency_ms for r in self.records if r.status == status],
                          dtype=np.float64)

    def send_lags_ms(self) -> np.ndarray:
        return np.asarray([r.send_lag_ms for r in self.records], dtype=np.float64)

    @property
    def max_send_lag_ms(self) -> float:
        return max((r.send_lag_ms for r in self.records), default=0.0)

    def last_answer_s(self, status: str = "OK") -> float:
        """Seconds after the start when the last answer with ``status`` came (0 if none)."""
        return max((r.due_s + r.latency_ms / 1e3 for r in self.records if r.status == status),
                   default=0.0)


@contextlib.contextmanager
def channels(target: str, count: int = 1, options: Iterable[tuple[str, Any]] = (),
             ready_timeout_s: float = 10.0) -> Iterator[list[grpc.Channel]]:
    """``count`` plaintext channels to ``target``, connected before the first due time.

    Each has its own connection (a local subchannel pool): several channels spread the calls
    over several connections, hence over processes behind one address or a round-robin list.
    Connecting is never part of a measured latency.
    """
    opts = [("grpc.use_local_subchannel_pool", 1), *options]
    opened = [open_channel(target, None, opts) for _ in range(max(1, count))]
    try:
        for channel in opened:
            grpc.channel_ready_future(channel).result(timeout=ready_timeout_s)
        yield opened
    finally:
        for channel in opened:
            channel.close()


def open_loop(calls: grpc.UnaryUnaryMultiCallable | Sequence[grpc.UnaryUnaryMultiCallable],
              requests: Callable[[int], Any] | Sequence[Any], rate: float, *,
              duration_s: float | None = None, count: int | None = None,
              timeout_s: float = 2.0, max_in_flight: int = 2000,
              observe: Callable[[Any], Any] | None = None, warmup: int = 0,
              grace_s: float = 5.0) -> LoadResult:
    """Send ``rate`` requests per second for ``duration_s`` (or ``count`` requests).

    ``calls``: one unary method, or several (e.g. one per channel), used in turn. ``requests``:
    a function of the request's index, called when it falls due (so building it counts in
    its latency, as it would for a real client), or a sequence used in turn. ``observe`` is
    called with each successful response on gRPC's callback thread; what it returns is kept
    in the record. ``warmup`` calls are made one by one before the clock starts, unrecorded.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
    if count is None:
        if duration_s is None:
            raise ValueError("give duration_s or count")
        count = round(rate * duration_s)
    methods = [calls] if callable(calls) else list(calls)
    if not methods:
        raise ValueError("no method to call")
    if callable(requests):
        make: Callable[[int], Any] = requests
    else:
        pool = list(requests)
        if not pool:
            raise ValueError("no requests to send")
        make = functools.partial(_nth, pool)
    for i in range(warmup):
        methods[i % len(methods)](make(i), timeout=timeout_s * 5)

    slots = threading.BoundedSemaphore(max_in_flight)
    records: list[Record | None] = [None] * count
    lags = [0.0] * count
    lock = threading.Condition()
    state = {"pending": 0, "closed": False}
    start = time.perf_counter() + START_DELAY_S

    def finish(i: int, due: float, fut: grpc.Future) -> None:
        now = time.perf_counter()
        code = fut.code()
        record = Record(i, due - start, (now - due) * 1e3,
                        code.name if code is not None else "UNKNOWN", {}, lags[i])
        try:
            if code == grpc.StatusCode.OK:
                response = fut.result()
                record = replace(record, timings_ms=dict(
                    getattr(response, "timings_ms", None) or {}))
                if observe is not None:
                    record = replace(record, observed=observe(response))
        finally:  # a failing ``observe`` must not leave its slot taken or the run waiting
            slots.release()
            with lock:
                if not state["closed"]:
                    records[i] = record
                state["pending"] -= 1
                lock.notify_all()

    for i in range(count):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if not slots.acquire(blocking=False):
            late_ms = max(0.0, time.perf_counter() - due) * 1e3
            records[i] = Record(i, due - start, late_ms, CLIENT_SATURATED, {}, late_ms)
            continue
        try:
            request = make(i)
            lags[i] = max(0.0, time.perf_counter() - due) * 1e3
            fut = methods[i % len(methods)].future(request, timeout=timeout_s)
        except BaseException:
            slots.release()
            raise
        with lock:
            state["pending"] += 1
        fut.add_done_callback(functools.partial(finish, i, due))

    give_up = time.perf_counter() + timeout_s + grace_s
    with lock:
        while state["pending"] > 0:
            left = give_up - time.perf_counter()
            if left <= 0:
                break
            lock.wait(left)
        state["closed"] = True
        finished = time.perf_counter()
        done = [r if r is not None else
                Record(i, i / rate, (finished - start - i / rate) * 1e3, CLIENT_UNANSWERED, {},
                       lags[i])
                for i, r in enumerate(records)]
    return LoadResult(rate, max_in_flight, start, finished, done)


def _nth(pool: list[Any], i: int) -> Any:
    return pool[i % len(pool)]
