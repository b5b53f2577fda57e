"""What a fit's threads buy in the phases that score users: one thread against FIT_THREADS.

``python -m shortlist.perf.fit_threads --artifact VERSION_DIR [--users N]`` loads a published
version and times, on the same N users (seeded), ``evaluate`` (validation's phase: every
recommender's list for each user) and ``generator_metric`` for each generator (tuning's score of
one grid point, with exact scans as tuning's index-free models use), first with
``map_in_order`` on one thread and then on ``FIT_THREADS``. Each pair must give the same value,
which the report checks; the seconds are wall time, so run it on an idle machine
(docs/performance.md, "Tuning at scale").
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from shortlist.common.threads import FIT_THREADS, map_in_order
from shortlist.ranking.bundle import RankingModels
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.training import evaluation
from shortlist.training import fit as fit_module
from shortlist.training.split import Events


@contextmanager
def threads(n: int) -> Iterator[None]:
    """``map_in_order`` on ``n`` threads in the modules that score users."""
    modules = (evaluation, fit_module)
    saved = [m.map_in_order for m in modules]
    for m in modules:
        m.map_in_order = functools.partial(map_in_order, threads=n)
    try:
        yield
    finally:
        for m, f in zip(modules, saved, strict=True):
            m.map_in_order = f


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def measure(version: Path, n_users: int, seed: int = 0) -> list[dict]:
    """One row per workload: seconds on one thread and on FIT_THREADS, and whether the two
    gave the same value."""
    models = RetrievalModels.load(version)
    ranking = RankingModels.load(version)
    rng = np.random.default_rng(seed)
    n = min(n_users, len(models.users))
    users = np.sort(rng.choice(len(models.users), n, replace=False)).astype(np.int64)
    held = Events(users, rng.integers(0, len(models.catalog), n), np.zeros(n, np.int64),
                  np.ones(n, np.float32))
    rows = []

    def row(name: str, fn: Callable[[], object]) -> None:
        with threads(1):
            one_s, one = timed(fn)
        with threads(FIT_THREADS):
            many_s, many = timed(fn)
        rows.append({"work": name, "users": n, "one_thread_s": one_s,
                     "fit_threads_s": many_s, "same": one == many})

    # validation's phase runs the served models, HNSW indices and all
    row("evaluate", lambda: evaluation.evaluate(models, ranking.stats, ranking.pipeline(), held,
                                                10, False))
    for name, gen in models.generators.items():
        if getattr(gen, "index", None) is not None:
            gen.index = None  # tuning's models are fitted without an index: exact scans
        k = 10 if gen.objective == "ndcg" else gen.config.candidates
        row(f"tuning score: {name}", functools.partial(
            fit_module.generator_metric, models, gen, held, users, k, gen.objective))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifact", type=Path, required=True, help="a published version dir")
    ap.add_argument("--users", type=int, default=2000, help="users scored (seeded sample)")
    args = ap.parse_args(argv)
    rows = measure(args.artifact, args.users)
    print(f"{'work':<28} {'users':>6} {'1 thread s':>11} {f'{FIT_THREADS} threads s':>11} "
          f"{'speed-up':>9} same")
    for r in rows:
        print(f"{r['work']:<28} {r['users']:>6} {r['one_thread_s']:>11.2f} "
              f"{r['fit_threads_s']:>11.2f} {r['one_thread_s'] / r['fit_threads_s']:>8.2f}x "
              f"{r['same']}")


if __name__ == "__main__":
    main()
