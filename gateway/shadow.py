"""Shadow scoring: a variant scores the same requests off the hot path, never served.

The served request only offers its work to a bounded queue (``submit``: no wait, no I/O); one
worker thread replays it against the shadow variant and compares the shadow's list with what
was served. When the worker falls behind, new work is dropped and counted, never queued
without bound: a shadow must not slow down or endanger what users are served. A duty cycle
caps the share of time a shadow request is in flight: on servers (or CPUs) the served path
shares, each shadow request competes with the served ones, and a full shadow doubles their
work; what the cap leaves is a sample, which is all the comparison needs.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scipy.stats import kendalltau

logger = logging.getLogger(__name__)

TOP = 10  # overlap@10 and the rank correlation compare the first ten items


def overlap(served: Sequence[str], shadow: Sequence[str], top: int = TOP) -> float:
    """Share of the served top ``top`` that the shadow's top ``top`` also holds (1.0: the
    same items, whatever their order)."""
    a, b = list(served[:top]), set(shadow[:top])
    if not a:
        return 1.0 if not b else 0.0
    return sum(item in b for item in a) / len(a)


def rank_correlation(served: Sequence[str], shadow: Sequence[str], top: int = TOP) -> float:
    """Kendall's tau-b between the two top ``top`` lists over the items either holds, an item
    missing from a list ranked just below its last (tied there): 1.0 for the same order, about
    -1 for reversed; NaN when fewer than two items are compared or one side is all ties."""
    a, b = list(served[:top]), list(shadow[:top])
    union = list(dict.fromkeys(a + b))
    if len(union) < 2:
        return math.nan
    rank_a = {item: r for r, item in enumerate(a)}
    rank_b = {item: r for r, item in enumerate(b)}
    x = [rank_a.get(item, len(a)) for item in union]
    y = [rank_b.get(item, len(b)) for item in union]
    if len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    return float(kendalltau(x, y).statistic)


@dataclass(frozen=True)
class ShadowJob:
    request_id: str
    experiment: str
    served_variant: str
    served: tuple[str, ...]
    # Produces the shadow variant's item ids for the same request (raises on failure).
    score: Callable[[], Sequence[str]]
    shadow_variant: str = ""


@dataclass(frozen=True)
class ShadowResult:
    job: ShadowJob
    items: tuple[str, ...]
    overlap: float
    correlation: float


class ShadowScorer:
    """One worker thread over a bounded queue; ``on_result`` and ``on_event`` (the job and
    ``"scored"``, ``"dropped"`` or ``"failed"``) report to the log and metrics."""

    def __init__(self, max_queue: int, on_result: Callable[[ShadowResult], None],
                 on_event: Callable[[ShadowJob, str], None] = lambda job, event: None,
                 duty_cycle: float = 1.0) -> None:
        if not 0.0 < duty_cycle <= 1.0:
            raise ValueError(f"duty_cycle must be in (0, 1], got {duty_cycle}")
        self._queue: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=max(1, max_queue))
        self._on_result = on_result
        self._on_event = on_event
        # After a job of d seconds the worker rests d * (1 / duty - 1): at most this share of
        # wall time has a shadow request in flight. On CPUs the served path shares, that
        # share bounds how many served requests a shadow can slow down (docs/operations.md).
        self._rest_factor = 1.0 / duty_cycle - 1.0
        self._rest_until = 0.0
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()

    @property
    def resting(self) -> bool:
        """Within the rest the duty cycle imposes: no job is taken (nor worth building)."""
        return bool(self._rest_until) and time.monotonic() < self._rest_until

    def submit(self, job: ShadowJob) -> bool:
        """Queue ``job`` if there is room and the worker is not resting; False if not. Only
        a full queue counts as a drop (the shadow fell behind); a job offered during the rest
        is passed over like a request the sample leaves out."""
        if self.resting:
            return False
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self._on_event(job, "dropped")
            return False
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the job in hand; what is still queued is dropped (shadows are optional
        work, and a shutdown must not wait for them)."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            self._queue.task_done()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def join(self) -> None:
        """Wait until every queued job is done (tests)."""
        self._queue.join()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                t0 = time.monotonic()
                self._score(job)
                if self._rest_factor:
                    end = time.monotonic()
                    self._rest_until = end + (end - t0) * self._rest_factor
            finally:
                self._queue.task_done()

    def _score(self, job: ShadowJob) -> None:
        try:
            items = tuple(job.score())
        except Exception as exc:  # an upstream failure or timeout: counted, never raised
            self._on_event(job, "failed")
            logger.debug("shadow request failed", extra={"fields": {
                "request_id": job.request_id, "error": str(exc)[:200]}})
            return
        result = ShadowResult(job, items, overlap(job.served, items),
                              rank_correlation(job.served, items))
        self._on_event(job, "scored")
        self._on_result(result)
