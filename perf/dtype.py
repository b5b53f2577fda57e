"""float32 or float64: per-request math in each, and what vectors cost in memory.

Everything is stored and computed in float32. The float64 variants widen the same real inputs
(item factors, ranking's item statistics and similarity spaces, the feature matrix), so only the
width differs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from shortlist.perf.report import Stats, cycle, result, time_calls
from shortlist.perf.workload import Workload
from shortlist.ranking.features import ItemStats, build_features


def as_float64(stats: ItemStats) -> ItemStats:
    """The same statistics with every float array widened, as a float64 build would hold."""
    return dataclasses.replace(
        stats, popularity=stats.popularity.astype(np.float64),
        trending=stats.trending.astype(np.float64),
        spaces={name: v.astype(np.float64) for name, v in stats.spaces.items()})


def measure(w: Workload, iterations: int = 50, repeats: int = 3,
            memory_rows: int = 100_000, memory_dim: int = 64) -> dict:
    """Per-request math in float32 and float64, and what a factor matrix costs in memory."""
    stats32 = w.ranking.stats
    stats64 = as_float64(stats32)
    spec = w.ranking.config.features
    f32 = np.ascontiguousarray(w.item_factors, dtype=np.float32)
    f64 = f32.astype(np.float64)
    u32, u64 = w.user_vectors.astype(np.float32), w.user_vectors.astype(np.float64)
    booster = w.ranking.ranker.booster
    cases: dict[str, dict[str, Stats]] = {}
    n = len(w.candidates[0])

    def score(factors: np.ndarray, users: np.ndarray) -> Callable[[], object]:
        nxt = cycle(list(range(len(w.candidates))))

        def call() -> object:
            i = nxt()
            return factors[w.candidates[i].items] @ users[i % len(users)]

        return call

    def gram(nxt: Callable[[], np.ndarray]) -> Callable[[], object]:
        def call() -> object:
            v = nxt()
            return v @ v.T

        return call

    cases[f"score_{n}x{f32.shape[1]}"] = time_calls(
        {"float32": (score(f32, u32), iterations), "float64": (score(f64, u64), iterations)},
        repeats)
    nxt32, nxt64 = cycle(w.candidates), cycle(w.candidates)
    cases[f"build_features_{n}"] = time_calls(
        {"float32": (lambda: build_features(nxt32(), stats32, spec), iterations),
         "float64": (lambda: build_features(nxt64(), stats64, spec), iterations)}, repeats)
    x32, x64 = cycle(w.features), cycle([x.astype(np.float64) for x in w.features])
    cases[f"lgbm_predict_{n}"] = time_calls(
        {"float32": (lambda: booster.predict(x32(), num_threads=1), iterations),
         "float64": (lambda: booster.predict(x64(), num_threads=1), iterations)}, repeats)
    diversity = stats32.diversity
    top = [c.items[:50] for c in w.candidates]
    v32 = cycle([diversity[t].astype(np.float32) for t in top])
    v64 = cycle([diversity[t].astype(np.float64) for t in top])
    cases["mmr_similarity_50x50"] = time_calls(
        {"float32": (gram(v32), iterations), "float64": (gram(v64), iterations)}, repeats)
    served = f32.size + sum(v.size for v in stats32.spaces.values())
    memory = {
        f"{memory_rows // 1000}k_x_{memory_dim}": {
            dt: {"mb": memory_rows * memory_dim * np.dtype(dt).itemsize / 1e6}
            for dt in ("float32", "float64")},
        "artifact_vectors": {  # ALS factors + ranking's similarity spaces
            dt: {"mb": served * np.dtype(dt).itemsize / 1e6} for dt in ("float32", "float64")},
    }
    for name, alts in memory.items():
        cases[f"memory_{name}"] = alts
    return result("dtype", "float32 or float64 for vectors and per-request math", "float32",
                  cases, notes="build_features always returns float32 (LightGBM's input); "
                               "its float64 variant widens the item statistics it reads. "
                               "mmr() itself converts to float64 internally.")
