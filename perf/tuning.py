"""Measurements behind each serving tuning choice (threads, dtypes, batching, server model).

``docs/design.md`` fixes LightGBM and OpenBLAS at one thread, float32 vectors, vectorised
features, a thread-pool gRPC server and one process, and says ``grpc.aio`` and one process per
core are to be measured before switching. Each ``bench_*`` function below compares the
alternatives for one of those choices on the project's real code (features, ranker, ALS
fold-in, the ranking gRPC service) and returns a plain dict, so the CLI can write them to JSON
and tests can run them on tiny data.

    python -m shortlist.perf.tuning [--artifacts DIR] [--output reports/tuning.json] [--seconds 3]

Without ``--artifacts`` a small model is fitted in a temporary directory first. Timings are
pooled over several rounds with the alternatives interleaved (rotated each round), so a burst
of background load hurts every alternative alike rather than whichever ran during it; each
alternative also reports its best round's median. Settings that must be fixed before a library
loads (``OPENBLAS_NUM_THREADS``) and the gRPC servers run in child processes of this module
(``--child``), which talk to the parent in JSON lines on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import logging
import os
import platform
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
import threadpoolctl
from tqdm import tqdm

from shortlist.common import artifacts
from shortlist.ranking.features import ItemStats, RankingInput, build_features
from shortlist.retrieval.als import AlsModel
from shortlist.retrieval.hnsw import exact_top_k
from shortlist.v1 import ranking_pb2, ranking_pb2_grpc

# LightGBM (which imports scikit-learn) and retrieval's bundle take seconds to import; they are
# imported where used, so the BLAS child processes start in under a second.
if TYPE_CHECKING:
    from shortlist.ranking.bundle import RankingModels
    from shortlist.ranking.service import RankingService
    from shortlist.ranking.settings import RankingSettings

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
_RANK = ranking_pb2.DESCRIPTOR.services_by_name["Ranking"]
RANK_METHOD = f"/{_RANK.full_name}/{_RANK.methods_by_name['Rank'].name}"
# Differences smaller than this share of the faster alternative are reported as ties: with a
# model fit competing for the same two cores, run-to-run noise is of that order.
TOLERANCE = 0.10
# p99 of a few seconds of load is noisier than a median over thousands of calls.
SERVER_TOLERANCE = 0.20

Stats = dict[str, Any]


# -- statistics ------------------------------------------------------------------------------


def summarize(samples_ms: Sequence[float]) -> Stats:
    """p50/p99/mean of latency samples in ms (only ``n`` when there are none)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if len(a) == 0:
        return {"n": 0}
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "n": int(len(a))}


def _rotated(names: Sequence[str], r: int) -> list[str]:
    k = r % len(names)
    return [*names[k:], *names[:k]]


def time_calls(calls: dict[str, tuple[Callable[[], object], int]], repeats: int = 3,
               warmup: int = 3) -> dict[str, Stats]:
    """Per-call latency of each alternative, ``(fn, iterations)`` per round, rounds rotated.

    Returns pooled statistics plus ``best_round_p50_ms``: the least disturbed round's median,
    the number to trust when background load comes and goes.
    """
    samples: dict[str, list[float]] = {name: [] for name in calls}
    round_p50: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(max(1, repeats)):
        for name in _rotated(list(calls), r):
            fn, iterations = calls[name]
            for _ in range(warmup):
                fn()
            got = []
            for _ in range(max(1, iterations)):
                t0 = time.perf_counter_ns()
                fn()
                got.append((time.perf_counter_ns() - t0) / 1e6)
            samples[name].extend(got)
            round_p50[name].append(float(np.median(got)))
    return {name: {**summarize(samples[name]), "best_round_p50_ms": min(round_p50[name]),
                   "rounds": len(round_p50[name])} for name in calls}


def _pct(value: float, base: float) -> float:
    return (value / base - 1.0) * 100.0 if base > 0 else float("inf")


def timing_verdicts(alts: dict[str, Stats], tolerance: float = TOLERANCE) -> dict[str, str]:
    """Each alternative against the fastest median, with its mean beside it.

    The mean carries the tail (a thread descheduled for 10 ms moves it, not the median), so a
    lower median with a higher mean shows up as such instead of as a plain win.
    """
    timed = {k: v for k, v in alts.items() if "p50_ms" in v}
    if not timed:
        return {k: "-" for k in alts}
    best = min(timed, key=lambda k: timed[k]["p50_ms"])
    ref = timed[best]
    out = {}
    for name, s in alts.items():
        if name not in timed:
            out[name] = "no samples"
        elif name == best:
            out[name] = "fastest p50"
        else:
            pct = _pct(s["p50_ms"], ref["p50_ms"])
            mean = f"{_pct(s['mean_ms'], ref['mean_ms']):+.0f}% mean"
            out[name] = (f"tie (+{pct:.0f}% p50, {mean})" if pct < tolerance * 100
                         else f"+{pct:.0f}% p50, {mean}")
    return out


def _error_count(s: Stats) -> int:
    return int(sum(s.get("errors", {}).values()))


def _error_share(s: Stats) -> float:
    return _error_count(s) / max(1, s.get("sent", 1))


# Error shares closer than this are treated as equal (a few calls caught by a load burst).
ERROR_MARGIN = 0.005


def _fewer_errors(a: Stats, b: Stats) -> bool:
    return _error_share(a) < _error_share(b) - ERROR_MARGIN


def server_verdicts(alts: dict[str, Stats],
                    tolerance: float = SERVER_TOLERANCE) -> dict[str, str]:
    """Fewest errors first (beyond a margin), then lowest p99; each row also shows its
    errors and throughput."""
    least = min(_error_share(s) for s in alts.values())
    level = [k for k, s in alts.items() if _error_share(s) <= least + ERROR_MARGIN]
    best = min(level, key=lambda k: alts[k].get("p99_ms", float("inf")))
    ref = alts[best]
    out = {}
    for name, s in alts.items():
        tail = f"{_error_count(s)} err, {s.get('throughput_rps', 0.0):.0f} rps"
        if "best_round_p99_ms" in s:  # the least disturbed of several rounds
            tail += f"; best round {s['best_round_errors']} err, p99 {s['best_round_p99_ms']:.1f}"
        if name == best:
            out[name] = f"best; {tail}"
        elif name not in level:
            out[name] = f"more errors; {tail}"
        elif "p99_ms" not in s:
            out[name] = f"no answers; {tail}"
        else:
            pct = _pct(s["p99_ms"], ref["p99_ms"])
            word = f"tie (+{pct:.0f}% p99)" if pct < tolerance * 100 else f"+{pct:.0f}% p99"
            out[name] = f"{word}; {tail}"
    return out


def _beats(a: Stats, b: Stats, server: bool, tolerance: float) -> bool:
    """Whether ``a`` is clearly better than ``b`` (beyond noise).

    Servers: a smaller share of errors, or as small and a lower p99. Micro-benchmarks: a
    lower median without a higher mean, so a setting that wins the typical call but loses
    the tail (threads waiting for a busy core) does not count as better.
    """
    if server:
        if _fewer_errors(a, b) or _fewer_errors(b, a):
            return _fewer_errors(a, b)
        if "p99_ms" not in a or "p99_ms" not in b:
            return False
        return a["p99_ms"] < b["p99_ms"] * (1.0 - tolerance)
    if "p50_ms" not in a or "p50_ms" not in b:
        return False
    return (a["p50_ms"] < b["p50_ms"] * (1.0 - tolerance)
            and a["mean_ms"] <= b["mean_ms"] * (1.0 + tolerance))


def _consistently_beats(a: Stats, b: Stats, server: bool, tolerance: float) -> bool:
    """``_beats`` over the pooled runs and, for servers measured in several rounds, in every
    round: a p99 or an error count from one disturbed round must not decide a switch."""
    if not _beats(a, b, server, tolerance):
        return False
    ra, rb = a.get("per_round", []), b.get("per_round", [])
    if server and ra and len(ra) == len(rb):
        return all(_beats(x, y, server, tolerance) for x, y in zip(ra, rb, strict=True))
    return True


def recommend(result: dict, server: bool = False) -> str:
    """Keep the current setting unless an alternative wins and loses no case.

    The current setting is the simpler or already-deployed one, so a switch must pay for
    itself beyond noise: in at least one case for micro-benchmarks; for the servers, whose
    p99 over a few seconds is itself noisy, in most rates and in every round of each.
    """
    tol = SERVER_TOLERANCE if server else TOLERANCE
    current = result["current"]
    timed = {case: c["alternatives"] for case, c in result["cases"].items()
             if current in c["alternatives"] and "n" in c["alternatives"][current]}
    others = sorted({a for alts in timed.values() for a in alts} - {current})
    tally = {}
    for other in others:
        cases = [alts for alts in timed.values() if other in alts]
        wins = sum(_consistently_beats(alts[other], alts[current], server, tol)
                   for alts in cases)
        losses = sum(_consistently_beats(alts[current], alts[other], server, tol)
                     for alts in cases)
        tally[other] = (wins, losses, len(cases))
    needed = {o: (n // 2 + 1 if server else 1) for o, (_, _, n) in tally.items()}
    switch = [o for o, (w, lo, _) in tally.items() if w >= needed[o] and lo == 0]
    if switch:
        best = max(switch, key=lambda o: tally[o][0])
        w, _, n = tally[best]
        return f"switch to {best}: better than {current} in {w} of {n} cases, worse in none"
    detail = "; ".join(f"{o} worse in {lo}, better in {w}, tied in {n - w - lo} of {n}"
                       for o, (w, lo, n) in tally.items())
    return f"keep {current} ({detail})"


def _result(choice: str, question: str, current: str, cases: dict[str, dict[str, Stats]],
            server: bool = False, notes: str = "", **extra: Any) -> dict:
    verdict = server_verdicts if server else timing_verdicts
    out = {"choice": choice, "question": question, "current": current, "notes": notes,
           "cases": {name: {"alternatives": alts, "verdicts": verdict(alts)}
                     for name, alts in cases.items()}, **extra}
    out["recommendation"] = recommend(out, server)
    return out


# -- the workload: real requests from a real artifact ----------------------------------------


@dataclass
class Workload:
    """Requests as the ranking server receives them, and what it computes from them."""

    version_dir: Path
    version: str
    ranking: RankingModels
    requests: list[ranking_pb2.RankRequest]
    inputs: list[RankingInput]
    features: list[np.ndarray]
    item_factors: np.ndarray  # ALS item factors (retrieval's scoring space)
    user_vectors: np.ndarray  # the sampled users' ALS vectors
    info: dict[str, Any] = field(default_factory=dict)


def fit_small_artifact(directory: Path, n_users: int = 2000, n_items: int = 3000,
                       n_interactions: int = 60_000, dim: int = 64, rounds: int = 100,
                       eval_users: int = 500, seed: int = 42) -> Path:
    """Fit and publish a small model (synthetic data, no tuning) when no artifact is given.

    ``dim`` matches production's 64 by default, since vector width is what the BLAS and
    dtype measurements scale with; the validation metrics (``eval_users``) only fill the
    manifest here, so few users suffice.
    """
    from shortlist.training.fit import fit
    from shortlist.training.params import FitParams
    from shortlist.training.synth import generate

    data = generate(directory / "data", n_users, n_items, n_interactions,
                    n_topics=min(20, n_items), seed=seed, progress=False)
    params = FitParams(seed=seed, tune=False, content_dim=dim, als_factors=dim,
                       als_iterations=5, ranker_rounds=rounds, hnsw_ef=100,
                       max_ranker_users=min(n_users, 2000),
                       max_eval_users=min(n_users, eval_users))
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):  # as shortlist-train
        return fit(str(data), directory / "artifacts", params, progress=False)


def load_workload(path: Path, n_requests: int = 16, n_candidates: int = 300,
                  seed: int = 42, k: int = 10) -> Workload:
    """Candidates for sampled real users, through retrieval's and ranking's own code.

    Generator counts are raised to at least the serving defaults (200/100/50) so requests
    carry ``n_candidates`` candidates even when tuning chose fewer.
    """
    from shortlist.ranking.bundle import RankingModels
    from shortlist.ranking.service import to_input
    from shortlist.retrieval.bundle import RetrievalModels, banned_mask
    from shortlist.retrieval.retriever import Retrieved
    from shortlist.retrieval.service import to_proto

    version_dir = artifacts.resolve(path)
    manifest = artifacts.read_manifest(version_dir)
    ranking = RankingModels.load(version_dir)
    retrieval = RetrievalModels.load(version_dir)
    cfg = retrieval.config
    retrieval.config = dataclasses.replace(
        cfg, als_candidates=max(cfg.als_candidates, 200),
        content_candidates=max(cfg.content_candidates, 100),
        trending_candidates=max(cfg.trending_candidates, 50), max_candidates=n_candidates)
    gen = retrieval.generator()
    n_items = len(retrieval.catalog)
    lengths = np.diff(retrieval.history.indptr)
    eligible = np.flatnonzero(lengths >= 5)
    if len(eligible) == 0:
        eligible = np.flatnonzero(lengths > 0)
    rng = np.random.default_rng(seed)
    users = np.sort(rng.choice(eligible, min(n_requests, len(eligible)), replace=False))
    # to_proto reads only the retriever's catalog and its upserted items (none here); a full
    # Retriever would also build the search index, which ranking never sees.
    retriever_view = SimpleNamespace(models=retrieval, touched=set())
    requests, inputs, features, user_vecs = [], [], [], []
    for user in users.tolist():
        items, stamps, _ = retrieval.history.events(user)
        cands = gen.generate(user, items, stamps, np.zeros(0, np.int64),
                             banned_mask(n_items, items), max_candidates=n_candidates)
        user_id = retrieval.users.id(user)
        response = to_proto(Retrieved(cands, user_id, manifest.version), retriever_view, k)
        request = ranking_pb2.RankRequest(  # as the gateway builds it
            user=response.user, candidates=response.candidates, items=response.items, k=k,
            request_id=f"tuning-{user}", version=manifest.version)
        inp = to_input(request, ranking)
        requests.append(request)
        inputs.append(inp)
        features.append(build_features(inp, ranking.stats))
        vec = gen.als_vector(user, items, True)
        if vec is not None:
            user_vecs.append(vec)
    if retrieval.als is not None and user_vecs:
        item_factors = retrieval.als.item_factors
        user_vectors = np.vstack(user_vecs).astype(np.float32)
    else:  # no ALS vectors here: content vectors have the same role and shape
        item_factors = ranking.stats.vectors.astype(np.float32)
        user_vectors = item_factors[rng.choice(len(item_factors), len(users))]
    sizes = [len(r.candidates.item_ids) for r in requests]
    info = {"artifact": str(version_dir), "version": manifest.version,
            "dataset": manifest.data.get("dataset", {}), "items": n_items,
            "features": int(features[0].shape[1]) if features else 0,
            "trees": int(ranking.ranker.booster.num_trees()),
            "requests": len(requests), "candidates_per_request": {
                "min": min(sizes, default=0), "max": max(sizes, default=0),
                "mean": float(np.mean(sizes)) if sizes else 0.0},
            "factor_dim": int(item_factors.shape[1]),
            "request_bytes": int(np.mean([r.ByteSize() for r in requests])) if requests else 0}
    return Workload(version_dir, manifest.version, ranking, requests, inputs, features,
                    item_factors, user_vectors, info)


def snapshot(version_dir: Path, into: Path) -> Path:
    """Hard-link (or copy) a version's files, so a fit replacing it meanwhile cannot pull
    them from under the server processes started minutes into the run."""
    dest = into / version_dir.name
    for src in sorted(p for p in version_dir.rglob("*") if p.is_file()):
        target = dest / src.relative_to(version_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, target)
        except OSError:  # another filesystem
            shutil.copy2(src, target)
    artifacts.read_manifest(dest)  # a version (manifest last) or an error now
    return dest


def _cycle(items: Sequence[Any]) -> Callable[[], Any]:
    """A zero-argument function returning the next item each call (requests vary)."""
    state = {"i": 0}

    def nxt() -> Any:
        state["i"] = (state["i"] + 1) % len(items)
        return items[state["i"]]

    return nxt


# -- 1. LightGBM prediction threads ----------------------------------------------------------


def bench_lightgbm_threads(w: Workload, iterations: int = 50, repeats: int = 3,
                           threads: Sequence[int] = (1, 2, 0)) -> dict:
    """One request's ``booster.predict`` with each thread count (0: OpenMP's default)."""
    booster = w.ranking.ranker.booster
    calls = {}
    for n in threads:
        nxt = _cycle(w.features)
        calls[f"num_threads={n}"] = (functools.partial(
            lambda nxt, n: booster.predict(nxt(), num_threads=n), nxt, n), iterations)
    rows = w.features[0].shape
    return _result(
        "lightgbm_threads", "LightGBM threads for one request's predict", "num_threads=1",
        {f"predict_{rows[0]}x{rows[1]}": time_calls(calls, repeats)},
        notes=f"num_threads=0 is OpenMP's default ({os.cpu_count()} cores here); "
              f"{booster.num_trees()} trees")


# -- 2. BLAS threads (child processes) -------------------------------------------------------


def blas_info() -> list[dict]:
    """Which BLAS numpy loaded and with how many threads: proof the setting took effect."""
    return [{k: i.get(k) for k in ("internal_api", "num_threads", "version", "prefix")}
            for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]


def blas_operations(version_dir: Path | None, seed: int = 42, scan_items: int = 100_000,
                    n_candidates: int = 300, history: int = 20,
                    dim: int = 64) -> dict[str, Callable[[], object]]:
    """The per-request numpy math of retrieval and ranking, on the artifact's ALS factors.

    The exact scan uses the artifact's factors when it has ``scan_items`` items, otherwise a
    seeded random matrix of that size and the same width (only shapes matter to BLAS).
    """
    rng = np.random.default_rng(seed)
    als_dir = version_dir / "retrieval" / "als" if version_dir else None
    if als_dir is not None and (als_dir / "item_factors.npy").is_file():
        model = AlsModel(**artifacts.read_json(als_dir / "params.json"))
        model.item_factors = np.load(als_dir / "item_factors.npy", allow_pickle=False)
    else:
        model = AlsModel(factors=dim)
        model.item_factors = rng.standard_normal((max(n_candidates, 1000), dim),
                                                 dtype=np.float32) * 0.1
    factors = model.item_factors
    n_items, dim = factors.shape
    _ = model.gram  # computed once at load by the server, not per request
    hist = rng.choice(n_items, min(history, n_items), replace=False)
    ones = np.ones(len(hist), dtype=np.float32)
    cands = rng.choice(n_items, min(n_candidates, n_items), replace=False)
    user = model.fold_in(hist, ones)
    scan = factors if n_items >= scan_items else rng.standard_normal(
        (scan_items, dim), dtype=np.float32) * 0.1
    recent = hist[:5]
    return {
        f"fold_in_{len(hist)}_items": lambda: model.fold_in(hist, ones),
        f"score_{len(cands)}x{dim}": lambda: factors[cands] @ user,
        f"sims_{len(cands)}x5": lambda: factors[cands] @ factors[recent].T,
        f"exact_scan_{len(scan) // 1000}k_top200":
            lambda: exact_top_k((scan @ user).astype(np.float64), 200),
    }


def _child_blas(args: argparse.Namespace) -> int:
    ops = blas_operations(args.artifacts, args.seed, args.scan_items)
    samples: dict[str, list[float]] = {}
    for name, fn in ops.items():
        for _ in range(3):
            fn()
        got = []
        for _ in range(args.iterations):
            t0 = time.perf_counter_ns()
            fn()
            got.append((time.perf_counter_ns() - t0) / 1e6)
        samples[name] = got
    _emit({"env": os.environ.get("OPENBLAS_NUM_THREADS"), "blas": blas_info(),
           "samples": samples})
    return 0


def _child_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": path, **extra}


def bench_blas_threads(version_dir: Path | None, iterations: int = 50, repeats: int = 2,
                       threads: Sequence[int] = (1, 2), scan_items: int = 100_000,
                       seed: int = 42, timeout_s: float = 300.0) -> dict:
    """Per-request matmuls with OPENBLAS_NUM_THREADS=n, one child process per run.

    The variable is read when OpenBLAS loads, i.e. at numpy's import, so it cannot change
    within a process; each round starts a fresh child per setting.
    """
    names = [f"OPENBLAS_NUM_THREADS={n}" for n in threads]
    samples: dict[str, dict[str, list[float]]] = {}
    round_p50: dict[str, dict[str, list[float]]] = {}
    effective: dict[str, Any] = {}
    for r in range(max(1, repeats)):
        for name in _rotated(names, r):
            n = name.split("=")[1]
            cmd = [sys.executable, "-m", "shortlist.perf.tuning", "--child", "blas", "--iterations",
                   str(iterations), "--seed", str(seed), "--scan-items", str(scan_items)]
            if version_dir is not None:
                cmd += ["--artifacts", str(version_dir)]
            proc = subprocess.run(cmd, cwd=REPO, env=_child_env(OPENBLAS_NUM_THREADS=n),
                                  capture_output=True, text=True, timeout=timeout_s,
                                  check=False)
            msgs = _json_lines(proc.stdout)
            if proc.returncode != 0 or not msgs:
                raise RuntimeError(f"blas child ({name}) failed: {proc.stderr[-2000:]}")
            effective[name] = msgs[-1]["blas"]
            for case, got in msgs[-1]["samples"].items():
                samples.setdefault(case, {}).setdefault(name, []).extend(got)
                round_p50.setdefault(case, {}).setdefault(name, []).append(
                    float(np.median(got)))
    cases = {case: {name: {**summarize(s), "best_round_p50_ms": min(round_p50[case][name]),
                           "rounds": len(round_p50[case][name])}
                    for name, s in by_alt.items()}
             for case, by_alt in samples.items()}
    return _result("blas_threads", "OpenBLAS threads for per-request numpy math",
                   names[0], cases, effective_blas=effective,
                   notes="each setting in its own child process; 'effective_blas' is what "
                         "threadpoolctl saw there")


# -- 3. float32 vs float64 -------------------------------------------------------------------


def _as64(stats: ItemStats) -> ItemStats:
    """The same statistics with every float array widened, as a float64 build would hold."""
    return dataclasses.replace(
        stats, popularity=stats.popularity.astype(np.float64),
        trending=stats.trending.astype(np.float64), vectors=stats.vectors.astype(np.float64),
        als_vectors=stats.als_vectors.astype(np.float64))


def bench_dtype(w: Workload, iterations: int = 50, repeats: int = 3,
                memory_rows: int = 100_000, memory_dim: int = 64) -> dict:
    """Per-request math in float32 and float64, and what a factor matrix costs in memory."""
    stats32 = w.ranking.stats
    stats64 = _as64(stats32)
    f32 = np.ascontiguousarray(w.item_factors, dtype=np.float32)
    f64 = f32.astype(np.float64)
    u32, u64 = w.user_vectors.astype(np.float32), w.user_vectors.astype(np.float64)
    booster = w.ranking.ranker.booster
    cases: dict[str, dict[str, Stats]] = {}
    n = len(w.inputs[0])

    def score(factors: np.ndarray, users: np.ndarray) -> Callable[[], object]:
        nxt = _cycle(list(range(len(w.inputs))))

        def call() -> object:
            i = nxt()
            return factors[w.inputs[i].items] @ users[i % len(users)]

        return call

    def gram(nxt: Callable[[], np.ndarray]) -> Callable[[], object]:
        def call() -> object:
            v = nxt()
            return v @ v.T

        return call

    cases[f"score_{n}x{f32.shape[1]}"] = time_calls(
        {"float32": (score(f32, u32), iterations), "float64": (score(f64, u64), iterations)},
        repeats)
    nxt32, nxt64 = _cycle(w.inputs), _cycle(w.inputs)
    cases[f"build_features_{n}"] = time_calls(
        {"float32": (lambda: build_features(nxt32(), stats32), iterations),
         "float64": (lambda: build_features(nxt64(), stats64), iterations)}, repeats)
    x32, x64 = _cycle(w.features), _cycle([x.astype(np.float64) for x in w.features])
    cases[f"lgbm_predict_{n}"] = time_calls(
        {"float32": (lambda: booster.predict(x32(), num_threads=1), iterations),
         "float64": (lambda: booster.predict(x64(), num_threads=1), iterations)}, repeats)
    top = [inp.items[:50] for inp in w.inputs]
    v32 = _cycle([stats32.vectors[t].astype(np.float32) for t in top])
    v64 = _cycle([stats32.vectors[t].astype(np.float64) for t in top])
    cases["mmr_similarity_50x50"] = time_calls(
        {"float32": (gram(v32), iterations), "float64": (gram(v64), iterations)}, repeats)
    memory = {
        f"{memory_rows // 1000}k_x_{memory_dim}": {
            dt: {"mb": memory_rows * memory_dim * np.dtype(dt).itemsize / 1e6}
            for dt in ("float32", "float64")},
        "artifact_vectors": {  # ALS factors + ranking's content and ALS vectors
            dt: {"mb": (f32.size + stats32.vectors.size + stats32.als_vectors.size)
                 * np.dtype(dt).itemsize / 1e6} for dt in ("float32", "float64")},
    }
    for name, alts in memory.items():
        cases[f"memory_{name}"] = alts
    return _result("dtype", "float32 or float64 for vectors and per-request math", "float32",
                   cases, notes="build_features always returns float32 (LightGBM's input); "
                                "its float64 variant widens the item statistics it reads. "
                                "mmr() itself converts to float64 internally.")


# -- 4. batching ----------------------------------------------------------------------------


def _single_rows(inp: RankingInput) -> list[RankingInput]:
    return [dataclasses.replace(
        inp, items=inp.items[i:i + 1], gen_scores=inp.gen_scores[i:i + 1],
        gen_ranks=inp.gen_ranks[i:i + 1], retrieval_score=inp.retrieval_score[i:i + 1],
        als_score=inp.als_score[i:i + 1], taste_score=inp.taste_score[i:i + 1])
        for i in range(len(inp))]


def bench_batching(w: Workload, iterations: int = 20, repeats: int = 3,
                   unbatched_iterations: int = 2) -> dict:
    """All candidates at once versus one at a time, for features and for the model.

    One sample is one whole request (all its candidates), so the two are comparable.
    """
    stats, ranker = w.ranking.stats, w.ranking.ranker
    inp, x = w.inputs[0], w.features[0]
    singles = _single_rows(inp)
    rows = [x[i:i + 1] for i in range(len(x))]
    n = len(inp)

    def features_each() -> None:
        for s in singles:
            build_features(s, stats)

    def predict_each() -> None:
        for r in rows:
            ranker.predict(r)

    cases = {
        f"build_features_{n}": time_calls(
            {"batched": (lambda: build_features(inp, stats), iterations),
             "per_candidate": (features_each, unbatched_iterations)}, repeats),
        f"lgbm_predict_{n}": time_calls(
            {"batched": (lambda: ranker.predict(x), iterations),
             "per_candidate": (predict_each, unbatched_iterations)}, repeats),
    }
    return _result("batching", "vectorised over all candidates, or one candidate at a time",
                   "batched", cases, notes="per_candidate: the same real functions called "
                                           "once per single-row input; ranker.predict uses "
                                           "num_threads=1")


# -- gRPC servers (child processes) and the open-loop client ---------------------------------


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _json_lines(text: str) -> list[dict]:
    """JSON objects among a child's stdout lines (libraries may print other lines)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


class _Counting(ranking_pb2_grpc.RankingServicer):
    """The real RankingService, counting calls so a shared port's split can be checked."""

    def __init__(self, inner: RankingService, executor: futures.Executor | None = None,
                 is_async: bool = False) -> None:
        self.inner = inner
        self.executor = executor
        self.served = 0
        self._lock = threading.Lock()
        if is_async:
            self.Rank = self._rank_async  # grpc.aio needs a coroutine handler

    def _count(self) -> None:
        with self._lock:
            self.served += 1

    def Rank(self, request: ranking_pb2.RankRequest,
             context: grpc.ServicerContext) -> ranking_pb2.RankResponse:
        self._count()
        return self.inner.Rank(request, context)

    async def _rank_async(self, request: ranking_pb2.RankRequest,
                          context: grpc.aio.ServicerContext) -> ranking_pb2.RankResponse:
        self._count()
        if self.executor is None:  # CPU work on the event loop: calls run one at a time
            return self.inner.Rank(request, context)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.inner.Rank, request, context)


def _server_options(settings: RankingSettings, reuseport: bool) -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", int(reuseport))]


def _child_server(args: argparse.Namespace) -> int:
    """Serve the real ranking service; report the port, the call count on each "count" line
    of stdin, and exit when stdin closes."""
    from shortlist.common.logs import configure_logging
    from shortlist.ranking.server import load_models
    from shortlist.ranking.service import RankingService
    from shortlist.ranking.settings import RankingSettings

    settings = RankingSettings(artifacts=args.artifacts, max_workers=args.workers)
    configure_logging(settings.log_level)  # per-request JSON logs are part of the real cost
    loaded = load_models(settings, args.artifacts)
    service = RankingService(settings)
    service.install(loaded, loaded.version)
    options = _server_options(settings, args.reuseport)
    limit = settings.max_concurrent_rpcs or None
    if args.mode == "threadpool":
        counting = _Counting(service)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers),
                             options=options, maximum_concurrent_rpcs=limit)
        ranking_pb2_grpc.add_RankingServicer_to_server(counting, server)
        port = server.add_insecure_port(args.address)
        server.start()
        _emit({"port": port, "pid": os.getpid(), "version": loaded.version})
        for line in sys.stdin:
            if line.strip() == "count":
                _emit({"served": counting.served})
        server.stop(1).wait()
    else:
        pool = (futures.ThreadPoolExecutor(max_workers=args.workers)
                if args.mode == "aio-executor" else None)
        counting = _Counting(service, pool, is_async=True)
        asyncio.run(_serve_aio(counting, args.address, options, limit, loaded.version))
    _emit({"served": counting.served, "pid": os.getpid(), "final": True})
    return 0


async def _serve_aio(servicer: _Counting, address: str, options: list, limit: int | None,
                     version: str) -> None:
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=limit)
    ranking_pb2_grpc.add_RankingServicer_to_server(servicer, server)
    port = server.add_insecure_port(address)
    await server.start()
    _emit({"port": port, "pid": os.getpid(), "version": version})
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        if line.strip() == "count":
            _emit({"served": servicer.served})
    await server.stop(1)


class ServerProcess:
    """One ``--child server`` process: started fresh, so it creates its own gRPC objects."""

    def __init__(self, version_dir: Path, mode: str, address: str = "127.0.0.1:0",
                 workers: int = 8, reuseport: bool = False) -> None:
        self.mode = mode
        self._stderr = tempfile.TemporaryFile(mode="w+")
        cmd = [sys.executable, "-m", "shortlist.perf.tuning", "--child", "server", "--mode", mode,
               "--artifacts", str(version_dir), "--address", address, "--workers",
               str(workers)] + (["--reuseport"] if reuseport else [])
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=_child_env(), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self._messages: queue.Queue[dict | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.port = 0
        self.served: int | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            for msg in _json_lines(line):
                self._messages.put(msg)
        self._messages.put(None)

    def _next(self, timeout_s: float) -> dict | None:
        try:
            return self._messages.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-2000:]

    def wait_ready(self, timeout_s: float = 120.0) -> int:
        msg = self._next(timeout_s)
        if not msg or "port" not in msg:
            tail = self._stderr_tail()
            self.stop()
            raise RuntimeError(f"{self.mode} server did not start: {tail}")
        self.port = int(msg["port"])
        return self.port

    def count(self, timeout_s: float = 10.0) -> int:
        """Calls served so far (asked over stdin, answered on stdout)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        msg = self._next(timeout_s)
        if not msg or "served" not in msg:
            raise RuntimeError(f"{self.mode} server did not answer: {self._stderr_tail()}")
        return int(msg["served"])

    def close(self) -> None:
        """Close stdin: the child's signal to drain and exit (see ``stop``)."""
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:  # the child is already gone
                pass

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """Close stdin, wait for the exit; returns the calls it served in its lifetime."""
        self.close()
        if self.proc.returncode is None:
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            while (msg := self._next(2.0)) is not None:
                self.served = msg.get("served", self.served)
            self._stderr.close()
        return self.served


def _stop_all(procs: Sequence[ServerProcess]) -> list[int | None]:
    """Stop several children at once: all are told first, then each is waited for."""
    for proc in procs:
        proc.close()
    return [proc.stop() for proc in procs]


def _warm(calls: list, payload: bytes, n: int, timeout_s: float) -> None:
    for i in range(n):
        calls[i % len(calls)](payload, timeout=timeout_s)


def open_loop(target: str, payloads: Sequence[bytes], rate: float, seconds: float,
              channels: int = 8, timeout_s: float = 2.0, warmup: int = 16) -> Stats:
    """Send at a fixed rate whatever the answers (open loop); latency from the due time.

    Measuring from when a request was due, not when it left, keeps a client that falls behind
    from hiding queueing (coordinated omission). Requests are pre-serialised so the client,
    sharing the cores with the server, spends as little as possible per call. Several channels
    with their own connections spread the calls over processes sharing a port.
    """
    opts = [("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.max_receive_message_length", 64 << 20)]
    chans = [grpc.insecure_channel(target, options=opts) for _ in range(max(1, channels))]
    try:
        for ch in chans:
            grpc.channel_ready_future(ch).result(timeout=30)
        calls = [ch.unary_unary(RANK_METHOD, request_serializer=None,
                                response_deserializer=ranking_pb2.RankResponse.FromString)
                 for ch in chans]
        _warm(calls, payloads[0], warmup, timeout_s * 5)
        n = max(1, round(rate * seconds))
        latencies: list[float] = []
        codes: Counter[str] = Counter()
        lock = threading.Lock()
        finished = threading.Event()
        state = {"left": n, "last": 0.0}

        def done(due: float, fut: grpc.Future) -> None:
            now = time.perf_counter()
            code = fut.code()
            with lock:
                codes[code.name if code is not None else "UNKNOWN"] += 1
                if code == grpc.StatusCode.OK:
                    latencies.append((now - due) * 1e3)
                    state["last"] = max(state["last"], now)
                state["left"] -= 1
                if state["left"] == 0:
                    finished.set()

        lag = 0.0
        start = time.perf_counter() + 0.01
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                lag = max(lag, -delay)
            fut = calls[i % len(calls)].future(payloads[i % len(payloads)], timeout=timeout_s)
            fut.add_done_callback(functools.partial(done, due))
        finished.wait(timeout_s + 10)
        with lock:
            ok = codes.get("OK", 0)
            span = max(1e-9, state["last"] - start)
            return {**summarize(latencies), "sent": n, "ok": ok,
                    "errors": {c: k for c, k in codes.items() if c != "OK"},
                    "unanswered": state["left"], "offered_rps": rate,
                    "throughput_rps": ok / span if ok else 0.0, "max_send_lag_ms": lag * 1e3}
    finally:
        for ch in chans:
            ch.close()


Runs = dict[str, dict[str, list[Stats]]]


def _measure(runs: Runs, name: str, target: str, payloads: Sequence[bytes],
             rates: Sequence[float], seconds: float, channels: int, timeout_s: float) -> None:
    for rate in rates:
        got = open_loop(target, payloads, rate, seconds, channels, timeout_s)
        runs.setdefault(f"{rate:g} req/s", {}).setdefault(name, []).append(got)


def _pooled(runs: Runs) -> dict[str, dict[str, Stats]]:
    return {case: {name: _pool_runs(rs) for name, rs in by_alt.items()}
            for case, by_alt in runs.items()}


def _drive(targets: dict[str, str], payloads: Sequence[bytes], rates: Sequence[float],
           seconds: float, rounds: int, channels: int, timeout_s: float) -> dict[str, dict]:
    """Every target at every rate, targets rotated each round, runs pooled per rate."""
    runs: Runs = {}
    names = list(targets)
    for r in range(max(1, rounds)):
        for name in _rotated(names, r):
            _measure(runs, name, targets[name], payloads, rates, seconds, channels, timeout_s)
    return _pooled(runs)


def _pool_runs(runs: list[Stats]) -> Stats:
    """Several runs at one rate as one: worst p99 and summed counts (conservative), with
    each run's own figures kept, so their spread shows how noisy the machine was."""
    if len(runs) == 1:
        return runs[0]
    timed = [r for r in runs if "p50_ms" in r]
    errors: Counter[str] = Counter()
    for r in runs:
        errors.update(r["errors"])
    out: Stats = {"n": sum(r["n"] for r in runs), "sent": sum(r["sent"] for r in runs),
                  "ok": sum(r["ok"] for r in runs), "errors": dict(errors),
                  "unanswered": sum(r["unanswered"] for r in runs),
                  "offered_rps": runs[0]["offered_rps"],
                  "throughput_rps": float(np.mean([r["throughput_rps"] for r in runs])),
                  "max_send_lag_ms": max(r["max_send_lag_ms"] for r in runs), "rounds": len(runs),
                  "per_round": [{k: r[k] for k in ("p50_ms", "p99_ms", "errors", "sent",
                                                   "throughput_rps") if k in r} for r in runs]}
    out["best_round_errors"] = min(_error_count(r) for r in runs)
    if timed:
        out["best_round_p99_ms"] = min(r["p99_ms"] for r in timed)
        out.update(p50_ms=float(np.median([r["p50_ms"] for r in timed])),
                   p99_ms=max(r["p99_ms"] for r in timed),
                   mean_ms=float(np.average([r["mean_ms"] for r in timed],
                                            weights=[r["n"] for r in timed])))
    return out


def ranking_deadline_s() -> float:
    """The gateway's deadline for Rank: an answer later than that is served degraded anyway,
    so the load generator counts it as an error, not as a slow success."""
    from shortlist.gateway.settings import GatewaySettings

    return float(GatewaySettings.model_fields["ranking_timeout_s"].default)


def _payloads(w: Workload) -> list[bytes]:
    return [r.SerializeToString() for r in w.requests]


# -- 5. grpc.aio versus a thread pool --------------------------------------------------------


def bench_grpc_server(w: Workload, rates: Sequence[float] = (20.0,), seconds: float = 1.0,
                      rounds: int = 1, workers: int = 8, channels: int = 8,
                      modes: Sequence[str] = ("threadpool", "aio", "aio-executor"),
                      timeout_s: float | None = None) -> dict:
    """The real Rank handler behind a sync thread-pool server and behind ``grpc.aio``.

    ``aio`` runs the handler on the event loop (one call at a time); ``aio-executor`` hands
    it to a pool of ``workers`` threads, which is what an aio port of CPU-bound code would do.
    Idle servers cost nothing, so all are up at once and measured in turn.
    """
    timeout_s = timeout_s or ranking_deadline_s()
    servers = {m: ServerProcess(w.version_dir, m, workers=workers) for m in modes}
    try:
        targets = {m: f"127.0.0.1:{s.wait_ready()}" for m, s in servers.items()}
        cases = _drive(targets, _payloads(w), rates, seconds, rounds, channels, timeout_s)
    finally:
        served = dict(zip(servers, _stop_all(list(servers.values())), strict=True))
    return _result("grpc_server", "grpc.aio or a thread-pool server for Rank", "threadpool",
                   cases, server=True, served=served, deadline_s=timeout_s,
                   notes=f"one process each, {workers} workers, max_concurrent_rpcs as in "
                         f"RankingSettings; open-loop client with {channels} channels in the "
                         f"parent process on the same cores; errors include calls past the "
                         f"deadline ({timeout_s:g} s, the gateway's ranking timeout)")


# -- 6. one process per core -----------------------------------------------------------------


def _reserve_port() -> socket.socket:
    """A bound (not listening) SO_REUSEPORT socket: its port is free for processes that
    also set SO_REUSEPORT, so they can start at once instead of waiting for the first."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def bench_processes(w: Workload, rates: Sequence[float] = (20.0,), seconds: float = 1.0,
                    rounds: int = 1, workers: int = 8, channels: int = 8,
                    processes: int = 2, timeout_s: float | None = None) -> dict:
    """One thread-pool server process versus ``processes`` sharing a port (SO_REUSEPORT).

    The first process is measured alone and together with the others, so both alternatives
    share it; rounds alternate the order (N then 1, 1 then N, ...) so the others are
    restarted only every other round. Each process is a fresh interpreter that creates its
    own server, so no gRPC state crosses a fork. The kernel spreads connections, not calls,
    over the processes, hence the client's several channels; ``split`` shows how the calls of
    each N-process run fell.
    """
    payloads = _payloads(w)
    timeout_s = timeout_s or ranking_deadline_s()
    single, multi = "1 process", f"{processes} processes"
    holder = _reserve_port()
    port = holder.getsockname()[1]
    target = f"127.0.0.1:{port}"
    procs: list[ServerProcess] = []
    runs: Runs = {}
    split: list[list[int]] = []

    def start(n: int) -> None:
        started = [ServerProcess(w.version_dir, "threadpool", target, workers, reuseport=True)
                   for _ in range(n)]
        procs.extend(started)
        for proc in started:
            if proc.wait_ready() != port:
                raise RuntimeError(f"a process bound {proc.port}, not the shared {port}")

    def measure(name: str) -> None:
        before = [proc.count() for proc in procs]
        _measure(runs, name, target, payloads, rates, seconds, channels, timeout_s)
        if name == multi:
            split.append([proc.count() - b for proc, b in zip(procs, before, strict=True)])

    try:
        start(processes)
        holder.close()
        for r in range(max(1, rounds)):
            if r % 2 == 0:
                measure(multi)
                _stop_all(procs[1:])
                del procs[1:]
                measure(single)
            else:
                measure(single)
                start(processes - 1)
                measure(multi)
    finally:
        holder.close()
        _stop_all(procs)
    return _result("processes", "one server process, or one per core sharing the port",
                   single, _pooled(runs), server=True, split=split, deadline_s=timeout_s,
                   notes=f"thread-pool servers with {workers} workers each, SO_REUSEPORT; "
                         f"client with {channels} channels in the parent process; 'split': "
                         f"calls per process in each {multi} run (warm-up included); errors "
                         f"include calls past the deadline ({timeout_s:g} s)")


# -- the CLI ---------------------------------------------------------------------------------

BENCHMARKS = ("lightgbm_threads", "blas_threads", "dtype", "batching", "grpc_server",
              "processes")


def run(w: Workload, names: Sequence[str], seconds: float, iterations: int, repeats: int,
        rates: Sequence[float], rounds: int, scan_items: int) -> dict[str, dict]:
    """Every selected benchmark in order; in-process ones with BLAS at one thread as served."""
    out: dict[str, dict] = {}
    for name in tqdm(list(names), desc="tuning", unit="benchmark"):
        t0 = time.perf_counter()
        load = os.getloadavg()[0]
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            if name == "lightgbm_threads":
                out[name] = bench_lightgbm_threads(w, iterations * 2, repeats)
            elif name == "dtype":
                out[name] = bench_dtype(w, iterations * 4, repeats)
            elif name == "batching":
                out[name] = bench_batching(w, iterations, repeats,
                                           max(2, iterations // 20))
        if name == "blas_threads":
            out[name] = bench_blas_threads(w.version_dir, iterations * 2, repeats,
                                           scan_items=scan_items)
        elif name == "grpc_server":
            out[name] = bench_grpc_server(w, rates, seconds, rounds)
        elif name == "processes":
            out[name] = bench_processes(w, rates, seconds, rounds)
        out[name]["seconds"] = round(time.perf_counter() - t0, 1)
        out[name]["loadavg_1min"] = [load, os.getloadavg()[0]]  # before, after: how noisy
        logger.info("%s: %s", name, out[name]["recommendation"])
    return out


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else "-"


def table(results: dict[str, dict]) -> str:
    """The report as text: one row per alternative per case, then one line per choice."""
    head = ("choice", "alternative", "p50 ms", "p99 ms", "mean", "verdict")
    rows = []
    for name, res in results.items():
        for case, c in res["cases"].items():
            for alt, s in c["alternatives"].items():
                verdict = c["verdicts"][alt]
                if "mb" in s:
                    verdict = f"{s['mb']:.1f} MB"
                rows.append((f"{name}: {case}", alt, _fmt(s.get("p50_ms")),
                             _fmt(s.get("p99_ms")), _fmt(s.get("mean_ms")), verdict))
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = [" | ".join(str(v).ljust(widths[i]) for i, v in enumerate(r)) for r in [head, *rows]]
    lines.insert(1, "-+-".join("-" * wd for wd in widths))
    lines.append("")
    lines += [f"{name}: {res['recommendation']}" for name, res in results.items()]
    return "\n".join(lines)


def _environment() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__,
            "lightgbm": metadata.version("lightgbm"), "grpcio": grpc.__version__,
            "blas_in_parent": blas_info(), "loadavg": list(os.getloadavg())}


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m shortlist.perf.tuning",
                                description=__doc__.split("\n")[0])
    p.add_argument("--artifacts", type=Path, default=None,
                   help="artifact root or version directory; default: fit a small model")
    p.add_argument("--output", type=Path, default=Path("reports/tuning.json"))
    p.add_argument("--seconds", type=float, default=3.0, help="load per rate per round (gRPC)")
    p.add_argument("--rates", type=_floats, default=[100.0, 200.0, 300.0, 400.0],
                   help="comma-separated request rates for the gRPC benchmarks")
    p.add_argument("--rounds", type=int, default=2, help="rounds of every rate (gRPC)")
    p.add_argument("--iterations", type=int, default=100,
                   help="base iterations per round for micro-benchmarks")
    p.add_argument("--repeats", type=int, default=5, help="rounds for micro-benchmarks")
    p.add_argument("--requests", type=int, default=32, help="distinct users' requests")
    p.add_argument("--candidates", type=int, default=300)
    p.add_argument("--scan-items", type=int, default=100_000)
    p.add_argument("--only", type=lambda s: s.split(","), default=list(BENCHMARKS),
                   help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    p.add_argument("--seed", type=int, default=42)
    # internal: what the parent starts as child processes
    p.add_argument("--child", choices=["blas", "server"], help=argparse.SUPPRESS)
    p.add_argument("--mode", default="threadpool", choices=["threadpool", "aio", "aio-executor"],
                   help=argparse.SUPPRESS)
    p.add_argument("--address", default="127.0.0.1:0", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=8, help=argparse.SUPPRESS)
    p.add_argument("--reuseport", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child == "blas":
        return _child_blas(args)
    if args.child == "server":
        return _child_server(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    unknown = set(args.only) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {sorted(unknown)}")
    np.random.seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="tuning-") as tmp:
        source = args.artifacts
        if source is None:
            logger.info("no --artifacts: fitting a small model in %s", tmp)
            path = fit_small_artifact(Path(tmp), seed=args.seed)
        else:
            path = snapshot(artifacts.resolve(source), Path(tmp) / "snapshot")
        w = load_workload(path, args.requests, args.candidates, args.seed)
        w.info["source"] = str(source) if source else "fitted in-process (synthetic)"
        logger.info("workload: %s", json.dumps(w.info))
        env_start = _environment()
        started = time.time()
        results = run(w, [b for b in BENCHMARKS if b in args.only], args.seconds,
                      args.iterations, args.repeats, args.rates, args.rounds, args.scan_items)
    report = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "command": " ".join(["python -m shortlist.perf.tuning", *(argv or sys.argv[1:])]),
        "environment": env_start, "loadavg_end": list(os.getloadavg()),
        "workload": w.info,
        "settings": {"seconds": args.seconds, "rates": args.rates, "rounds": args.rounds,
                     "iterations": args.iterations, "repeats": args.repeats,
                     "scan_items": args.scan_items, "seed": args.seed,
                     "tolerance": TOLERANCE, "server_tolerance": SERVER_TOLERANCE},
        "benchmarks": results,
        "recommendations": {k: v["recommendation"] for k, v in results.items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1, sort_keys=False) + "\n")
    print(table(results))
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
