"""Math-library thread limits: the one place they are set, first thing in each entry point.

OpenBLAS (behind numpy, scipy and implicit) reads ``OPENBLAS_NUM_THREADS`` once, when it loads
at numpy's first import, and starts a thread per core otherwise; setting the variable later
changes nothing. One thread is faster per request on a busy box (docs/performance.md), since
parallelism comes from concurrent requests. hnswlib, LightGBM and implicit get their thread
counts as explicit arguments, so nothing else is limited here.

This module imports only the standard library, so an entry point can import it, call
``limit_math_threads()``, and only then import what loads numpy. A value already in the
environment (the Makefile's, the image's, an operator's) is kept.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

MATH_THREADS = {"OPENBLAS_NUM_THREADS": "1"}


def limit_math_threads() -> bool:
    """Set the limits unless the environment already has them; False when numpy had already
    loaded (too late for them to apply in this process)."""
    for name, value in MATH_THREADS.items():
        os.environ.setdefault(name, value)
    return "numpy" not in sys.modules


# Threads a fit uses where its work splits into independent parts: LightGBM's training, blocks
# of items' neighbour lists (``itemitem.pruned_each``), and users' candidates and features
# (``training.fit.build_examples``), tuning scores (``generator_metric``) and evaluation
# (``training.evaluation.evaluate``), all but LightGBM through ``map_in_order``. Two: the cores
# of the machine class Shortlist is built for, where a fit runs alone. A constant, not the
# machine's core count, so that a fit gives the same artifact wherever it runs (LightGBM's
# sums are ordered per thread).
FIT_THREADS = 2

T = TypeVar("T")
R = TypeVar("R")


def map_in_order(fn: Callable[[T], R], items: Sequence[T], first_alone: bool = True,
                 threads: int = FIT_THREADS) -> Iterator[R]:
    """``fn`` of each item, computed on ``threads`` threads and yielded in the items' order, so
    that whatever the caller sums or appends comes out as from a plain loop.

    For work whose heavy parts release the GIL (numpy, scipy, hnswlib, LightGBM). With
    ``first_alone`` the first item runs before any thread starts: state built lazily on first
    use (ALS's Gram matrix, the event-time keys) is then built once, not raced by every thread.
    At most a few items run ahead of the consumer, so results never pile up in memory, and a
    consumer that stops early (or fails) leaves no work queued behind it.
    """
    if not items:
        return
    start = 0
    if first_alone:
        yield fn(items[0])
        start = 1
    ahead = 4 * threads
    with ThreadPoolExecutor(threads) as pool:
        pending: deque[Future[R]] = deque()
        following = iter(range(start, len(items)))
        try:
            for i in following:
                pending.append(pool.submit(fn, items[i]))
                if len(pending) >= ahead:
                    break
            while pending:
                result = pending.popleft().result()
                nxt = next(following, None)
                if nxt is not None:
                    pending.append(pool.submit(fn, items[nxt]))
                yield result
        finally:
            for future in pending:
                future.cancel()
