"""LightGBM prediction threads: one request's ``booster.predict`` with each thread count.

The ranker predicts with ``num_threads=1``: parallelism comes from concurrent requests, and a
second OpenMP thread on a busy box waits for a core instead of helping.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

from shortlist.perf.report import cycle, result, time_calls
from shortlist.perf.workload import Workload


def measure(w: Workload, iterations: int = 50, repeats: int = 3,
            threads: Sequence[int] = (1, 2, 0)) -> dict:
    """One request's ``booster.predict`` with each thread count (0: OpenMP's default)."""
    booster = w.ranking.ranker.booster
    calls = {}
    for n in threads:
        nxt = cycle(w.features)
        calls[f"num_threads={n}"] = (functools.partial(
            lambda nxt, n: booster.predict(nxt(), num_threads=n), nxt, n), iterations)
    rows = w.features[0].shape
    return result(
        "lightgbm_threads", "LightGBM threads for one request's predict", "num_threads=1",
        {f"predict_{rows[0]}x{rows[1]}": time_calls(calls, repeats)},
        notes=f"num_threads=0 is OpenMP's default ({os.cpu_count()} cores here); "
              f"{booster.num_trees()} trees")
