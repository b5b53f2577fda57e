"""What drift monitoring costs: the per-request observe call of each server, and a scrape.

``python -m shortlist.perf.drift --artifacts DIR`` loads a version that has drift references,
builds real candidates (retrieval's generators and merge) and real ranked lists (ranking's
pipeline) for a sample of its users, then times ``Retriever.observe_drift`` and
``LoadedVersion.observe_drift`` (what ``Retrieve`` and ``Rank`` add to each request) and
``Monitor.readings`` (what a /metrics scrape computes), one call at a time.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from shortlist.common import artifacts

logger = logging.getLogger(__name__)


def time_per_call(call: Callable[[int], object], calls: int) -> dict[str, float]:
    """Microseconds per call (median, mean, p99) over ``calls`` calls, each timed alone."""
    spent = np.empty(calls)
    for n in range(calls):
        t0 = time.perf_counter_ns()
        call(n)
        spent[n] = time.perf_counter_ns() - t0
    spent /= 1e3
    return {"p50_us": round(float(np.median(spent)), 2),
            "mean_us": round(float(spent.mean()), 2),
            "p99_us": round(float(np.percentile(spent, 99)), 2), "calls": calls}


def measure(version_dir: Path, users: int = 200, calls: int = 20_000,
            seed: int = 0) -> dict[str, dict[str, float]]:
    """Each observe call and a scrape's readings, on ``users`` sampled users' real lists."""
    from shortlist.ranking.bundle import RankingModels
    from shortlist.ranking.state import LoadedVersion
    from shortlist.retrieval.bundle import RetrievalModels, banned_mask
    from shortlist.retrieval.retriever import Retriever

    retriever = Retriever(RetrievalModels.load(version_dir), version_dir.name, 2000)
    loaded = LoadedVersion.of(RankingModels.load(version_dir), version_dir.name)
    if retriever.drift is None or loaded.drift is None:
        raise ValueError(f"{version_dir} has no drift references (fitted before them)")
    models = retriever.models
    known = np.flatnonzero(np.diff(models.history.indptr) > 0)
    sample = np.random.default_rng(seed).choice(known, min(users, len(known)), replace=False)
    cands, ranked = [], []
    for user in sample.tolist():
        state = models.user_state(user)
        c = retriever.source.generate(state, banned_mask(len(models.catalog), state.items))
        cands.append(c)
        ranked.append(loaded.rank(c, 10, None))
    return {
        "retrieval_observe": time_per_call(
            lambda n: retriever.observe_drift(cands[n % len(cands)]), calls),
        "ranking_observe": time_per_call(
            lambda n: loaded.observe_drift(ranked[n % len(ranked)]), calls),
        "retrieval_scrape": time_per_call(lambda n: retriever.drift.readings(), calls // 20),
        "ranking_scrape": time_per_call(lambda n: loaded.drift.readings(), calls // 20),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shortlist.perf.drift",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"),
                        help="artifact root (its latest version) or one version")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args(argv)
    version = artifacts.resolve(args.artifacts)
    print(json.dumps({"version": version.name,
                      **measure(version, args.users, args.calls)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
