"""Batching: features and the model over all of a request's candidates at once, or one by one.

Both are vectorised over candidates in serving; this measures what that buys on the real
functions, one sample being one whole request either way.
"""

from __future__ import annotations

import numpy as np

from shortlist.common.candidates import Candidates
from shortlist.perf.report import result, time_calls
from shortlist.perf.workload import Workload


def single_rows(cands: Candidates) -> list[Candidates]:
    """Each candidate as a request of its own (the user fields shared)."""
    return [cands.take(np.array([i])) for i in range(len(cands))]


def measure(w: Workload, iterations: int = 20, repeats: int = 3,
            unbatched_iterations: int = 2) -> dict:
    """All candidates at once versus one at a time, for features and for the model."""
    pipeline = w.ranking.pipeline()
    ranker = w.ranking.ranker
    cands, x = w.candidates[0], w.features[0]
    singles = single_rows(cands)
    rows = [x[i:i + 1] for i in range(len(x))]
    n = len(cands)

    def features_each() -> None:
        for s in singles:
            pipeline.features(s)

    def predict_each() -> None:
        for r in rows:
            ranker.predict(r)

    cases = {
        f"build_features_{n}": time_calls(
            {"batched": (lambda: pipeline.features(cands), iterations),
             "per_candidate": (features_each, unbatched_iterations)}, repeats),
        f"lgbm_predict_{n}": time_calls(
            {"batched": (lambda: ranker.predict(x), iterations),
             "per_candidate": (predict_each, unbatched_iterations)}, repeats),
    }
    return result("batching", "vectorised over all candidates, or one candidate at a time",
                  "batched", cases, notes="per_candidate: the same real functions called "
                                          "once per single-row input; ranker.predict uses "
                                          "num_threads=1")
