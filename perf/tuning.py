"""Measurements behind each serving tuning choice, run together into one report.

``docs/design.md`` fixes LightGBM and OpenBLAS at one thread, float32 vectors, vectorised
features and a thread-pool gRPC server in one process per server. Each choice has its own
module, which compares the alternatives on the project's real code and returns a plain dict
(``perf.report.result``):

- ``perf.lightgbm_threads``: the ranker's ``predict`` threads;
- ``perf.blas_threads``: OpenBLAS threads (child processes);
- ``perf.dtype``: float32 or float64;
- ``perf.batching``: vectorised over candidates or one at a time;
- ``perf.server_layout``: the ranking server's pool size, and one process or several (the
  real server, started through ``common.stack``, under ``clients.load``'s open loop).

    python -m shortlist.perf.tuning [--artifacts DIR] [--output reports/tuning.json] [--seconds 3]

Without ``--artifacts`` a small model is fitted in a temporary directory first. Timings are
pooled over several rounds with the alternatives interleaved (rotated each round), so a burst
of background load hurts every alternative alike rather than whichever ran during it; each
alternative also reports its best round's median.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import threadpoolctl
from tqdm import tqdm

from shortlist.common import artifacts
from shortlist.perf import batching, blas_threads, dtype, lightgbm_threads, server_layout
from shortlist.perf.report import SERVER_TOLERANCE, TOLERANCE, table
from shortlist.perf.workload import Workload, fit_small_artifact, load_workload, snapshot

logger = logging.getLogger(__name__)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"iterations": args.iterations, "repeats": args.repeats, "rates": args.rates,
            "seconds": args.seconds, "rounds": args.rounds, "scan_items": args.scan_items}


# name -> (in-process: BLAS held at one thread as served, measurement of (workload, settings))
BENCHMARKS: dict[str, tuple[bool, Callable[[Workload, dict[str, Any]], dict]]] = {
    "lightgbm_threads": (True, lambda w, s: lightgbm_threads.measure(
        w, s["iterations"] * 2, s["repeats"])),
    "blas_threads": (False, lambda w, s: blas_threads.measure(
        w.version_dir, s["iterations"] * 2, s["repeats"], scan_items=s["scan_items"])),
    "dtype": (True, lambda w, s: dtype.measure(w, s["iterations"] * 4, s["repeats"])),
    "batching": (True, lambda w, s: batching.measure(
        w, s["iterations"], s["repeats"], max(2, s["iterations"] // 20))),
    "server_workers": (False, lambda w, s: server_layout.measure_workers(
        w, s["rates"], s["seconds"], s["rounds"])),
    "processes": (False, lambda w, s: server_layout.measure_processes(
        w, s["rates"], s["seconds"], s["rounds"])),
}


def run(w: Workload, names: Sequence[str], settings: dict[str, Any]) -> dict[str, dict]:
    """Every selected measurement in the order of ``BENCHMARKS``."""
    out: dict[str, dict] = {}
    for name in tqdm([n for n in BENCHMARKS if n in names], desc="tuning", unit="benchmark"):
        t0 = time.perf_counter()
        load = os.getloadavg()[0]
        in_process, measure = BENCHMARKS[name]
        if in_process:
            with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
                out[name] = measure(w, settings)
        else:
            out[name] = measure(w, settings)
        out[name]["seconds"] = round(time.perf_counter() - t0, 1)
        out[name]["loadavg_1min"] = [load, os.getloadavg()[0]]  # before, after: how noisy
        logger.info("%s: %s", name, out[name]["recommendation"])
    return out


def _environment() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__,
            "lightgbm": metadata.version("lightgbm"), "grpcio": grpc.__version__,
            "blas_in_parent": blas_threads.blas_info(), "loadavg": list(os.getloadavg())}


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
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    unknown = set(args.only) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {sorted(unknown)} (known: "
                         f"{', '.join(BENCHMARKS)})")
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
        results = run(w, args.only, _settings(args))
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
