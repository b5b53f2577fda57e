"""`shortlist-bench`: open-loop load against the gateway, with per-stage latency percentiles.

Requests are sent at a fixed rate whether or not earlier ones have answered (open loop), so
queueing shows up in the tail instead of slowing the generator down. Each response carries the
servers' own stage timings (``debug``), which are aggregated next to the client's end-to-end
latency; "network" is what the client saw minus what the gateway measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from shortlist.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

MIX = (("established", 0.7), ("new", 0.1), ("onboarding", 0.1), ("filtered", 0.1))


@dataclass
class Results:
    started: float = 0.0
    finished: float = 0.0
    sent: int = 0
    codes: Counter = field(default_factory=Counter)
    stages: dict[str, list[float]] = field(default_factory=dict)
    degraded: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, end_to_end_ms: float, code: str, timings: dict[str, float] | None,
            degraded: bool) -> None:
        with self.lock:
            self.codes[code] += 1
            # end_to_end is for answered requests; failures get their own latency row
            key = "end_to_end" if code == "OK" else f"failed.{code}"
            self.stages.setdefault(key, []).append(end_to_end_ms)
            if timings:
                for key, ms in timings.items():
                    self.stages.setdefault(key, []).append(ms)
                if "total" in timings:
                    self.stages.setdefault("network", []).append(
                        max(0.0, end_to_end_ms - timings["total"]))
            self.degraded += degraded

    def report(self) -> dict:
        span = max(1e-9, self.finished - self.started)
        ok = self.codes.get("OK", 0)
        stages = {}
        for name, values in sorted(self.stages.items()):
            arr = np.asarray(values)
            stages[name] = {"p50_ms": float(np.percentile(arr, 50)),
                            "p95_ms": float(np.percentile(arr, 95)),
                            "p99_ms": float(np.percentile(arr, 99)),
                            "max_ms": float(arr.max()), "count": int(len(arr))}
        return {"qps": ok / span, "requests": self.sent, "ok": ok, "degraded": self.degraded,
                "errors": {c: n for c, n in self.codes.items() if c != "OK"},
                "duration_s": span, "stages": stages}


def make_request(rng: np.random.Generator, users: list[str],
                 seen_items: list[str]) -> gateway_pb2.RecommendRequest:
    seen_items = seen_items[:]  # callbacks append from other threads: work on a snapshot
    kind = rng.choice([m for m, _ in MIX], p=[p for _, p in MIX])
    req = gateway_pb2.RecommendRequest(k=10, debug=True)
    if kind == "established" or (kind == "filtered" and users):
        req.user_id = users[int(rng.integers(len(users)))] if users else uuid.uuid4().hex
    else:
        req.user_id = f"bench-{uuid.uuid4().hex[:12]}"
    if kind == "onboarding" and seen_items:
        req.recent_item_ids.extend(rng.choice(seen_items, min(3, len(seen_items))).tolist())
    if kind == "filtered" and seen_items:
        req.filters.CopyFrom(common_pb2.Filters(exclude_item_ids=seen_items[-5:]))
    return req


def run(target: str, rate: float, duration_s: float, users: list[str], timeout_s: float = 2.0,
        max_in_flight: int = 2000, seed: int = 42) -> dict:
    """Send ``rate`` requests per second for ``duration_s``; returns the report."""
    rng = np.random.default_rng(seed)
    res = Results()
    seen_items: list[str] = []
    in_flight = threading.Semaphore(max_in_flight)
    with grpc.insecure_channel(target) as channel:
        client = gateway_pb2_grpc.GatewayStub(channel)
        grpc.channel_ready_future(channel).result(timeout=10)

        def done(fut, t0):
            ms = (time.perf_counter() - t0) * 1e3
            try:
                r = fut.result()
                res.add(ms, "OK", dict(r.timings_ms), r.degraded)
                if r.items and len(seen_items) < 5000:
                    seen_items.append(r.items[0].item_id)
            except grpc.RpcError as exc:
                res.add(ms, exc.code().name, None, False)
            in_flight.release()

        res.started = time.perf_counter()
        interval = 1.0 / rate
        n_total = int(rate * duration_s)
        for n in range(n_total):
            due = res.started + n * interval
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if not in_flight.acquire(timeout=timeout_s):
                res.add(timeout_s * 1e3, "CLIENT_SATURATED", None, False)
                continue
            req = make_request(rng, users, seen_items)
            t0 = time.perf_counter()
            fut = client.Recommend.future(req, timeout=timeout_s)
            fut.add_done_callback(lambda f, t0=t0: done(f, t0))
            res.sent += 1
        for _ in range(max_in_flight):  # wait for every answer
            in_flight.acquire(timeout=timeout_s + 1)
        res.finished = time.perf_counter()
    return res.report()


def summary(report: dict) -> str:
    lines = [f"qps {report['qps']:.1f}  requests {report['requests']}  ok {report['ok']}  "
             f"degraded {report['degraded']}  errors {report['errors'] or 'none'}",
             f"{'stage':<28}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}  (ms)"]
    order = ["end_to_end", "network", "total", "gateway", "retrieval", "ranking"]
    names = order + sorted(set(report["stages"]) - set(order))
    for name in names:
        s = report["stages"].get(name)
        if s:
            lines.append(f"{name:<28}{s['p50_ms']:>9.2f}{s['p95_ms']:>9.2f}{s['p99_ms']:>9.2f}"
                         f"{s['max_ms']:>9.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shortlist-bench", description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--timeout", type=float, default=2.0, help="per-request deadline")
    parser.add_argument("--users", type=Path, default=None,
                        help="known user ids, one per line (default: 1..600, MovieLens-style)")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON report")
    args = parser.parse_args(argv)
    users = ([u.strip() for u in args.users.read_text().splitlines() if u.strip()]
             if args.users else [str(i) for i in range(1, 601)])
    report = run(args.target, args.rate, args.duration, users, args.timeout)
    print(summary(report))
    if args.output:
        args.output.write_text(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
