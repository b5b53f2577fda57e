"""OpenBLAS threads: the per-request numpy math of retrieval and ranking at each thread count.

``OPENBLAS_NUM_THREADS`` is read when OpenBLAS loads, i.e. at numpy's import, so it cannot change
within a process: each setting runs in a fresh child process of this module
(``python -m shortlist.perf.blas_threads --child``), which reports its samples and the BLAS it
actually loaded as one JSON line on stdout. This module imports no model code beyond ALS, so
the child starts in under a second.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import threadpoolctl

from shortlist.common.artifacts import read_json
from shortlist.perf.report import result, rotated, summarize
from shortlist.retrieval.als import AlsModel
from shortlist.retrieval.hnsw import exact_top_k

# Where a version keeps the ALS generator's model (retrieval/bundle.py, generators/als.py).
ALS_DIR = Path("retrieval") / "generators" / "als"


def blas_info() -> list[dict]:
    """Which BLAS numpy loaded and with how many threads: proof the setting took effect."""
    return [{k: i.get(k) for k in ("internal_api", "num_threads", "version", "prefix")}
            for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]


def blas_operations(version_dir: Path | None, seed: int = 42, scan_items: int = 100_000,
                    n_candidates: int = 300, history: int = 20,
                    dim: int = 64) -> dict[str, Callable[[], object]]:
    """The per-request numpy math of retrieval and ranking, on the artifact's ALS factors.

    Only the item factors are loaded (a million users' factors would dominate the child's
    start). The exact scan uses the artifact's factors when it has ``scan_items`` items,
    otherwise a seeded random matrix of that size and the same width (only shapes matter to
    BLAS).
    """
    rng = np.random.default_rng(seed)
    als_dir = version_dir / ALS_DIR if version_dir else None
    if als_dir is not None and (als_dir / "item_factors.npy").is_file():
        model = AlsModel(**read_json(als_dir / "params.json"))
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


def _child(args: argparse.Namespace) -> int:
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
    sys.stdout.write(json.dumps({"env": os.environ.get("OPENBLAS_NUM_THREADS"),
                                 "blas": blas_info(), "samples": samples}) + "\n")
    sys.stdout.flush()
    return 0


def json_lines(text: str) -> list[dict]:
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


def measure(version_dir: Path | None, iterations: int = 50, repeats: int = 2,
            threads: Sequence[int] = (1, 2), scan_items: int = 100_000,
            seed: int = 42, timeout_s: float = 300.0) -> dict:
    """Per-request matmuls with OPENBLAS_NUM_THREADS=n, one child process per run; each round
    starts a fresh child per setting, settings rotated."""
    names = [f"OPENBLAS_NUM_THREADS={n}" for n in threads]
    samples: dict[str, dict[str, list[float]]] = {}
    round_p50: dict[str, dict[str, list[float]]] = {}
    effective: dict[str, Any] = {}
    for r in range(max(1, repeats)):
        for name in rotated(names, r):
            n = name.split("=")[1]
            cmd = [sys.executable, "-m", "shortlist.perf.blas_threads", "--child",
                   "--iterations", str(iterations), "--seed", str(seed),
                   "--scan-items", str(scan_items)]
            if version_dir is not None:
                cmd += ["--artifacts", str(version_dir)]
            proc = subprocess.run(cmd, env={**os.environ, "OPENBLAS_NUM_THREADS": n},
                                  capture_output=True, text=True, timeout=timeout_s,
                                  check=False)
            msgs = json_lines(proc.stdout)
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
    return result("blas_threads", "OpenBLAS threads for per-request numpy math",
                  names[0], cases, effective_blas=effective,
                  notes="each setting in its own child process; 'effective_blas' is what "
                        "threadpoolctl saw there")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shortlist.perf.blas_threads",
                                description=__doc__.split("\n")[0])
    p.add_argument("--child", action="store_true",
                   help="measure in this process and print one JSON line (what measure() runs)")
    p.add_argument("--artifacts", type=Path, default=None, help="a version directory")
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--scan-items", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    print(json.dumps(measure(args.artifacts, args.iterations, args.repeats,
                             scan_items=args.scan_items, seed=args.seed), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
