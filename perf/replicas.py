"""Replicated serving measured as processes: read-your-writes, a replica killed under load, and
Redis killed under acknowledged writes (issue targets in docs/scale-out.md).

A stack of two retrieval and two ranking replicas on a local ``redis-server`` (AOF synced on
every write) and the gateway, on free ports (``common.stack.Stack``, as `make serve-replicated`
runs it), then three runs through the gateway:

1. **Read your writes**: ``--users`` fresh users each record one interaction, then ask for
   recommendations twice. A fresh user becomes a LIGHT user with one interaction, so the first
   answer shows whether the write was reflected, whichever replica served it. What waiting for
   the write added is measured where it happens: the retrieval replica's time in
   ``wait_applied`` (the ``retrieval.wait`` timing of a debug response). The first answer's
   latency less the second's (same user, same work) is reported too, but on a shared box its
   tails are mostly the noise of two calls.
2. **Replica killed**: Recommend paced at ``--rate`` for ``--seconds``; one retrieval replica is
   killed with SIGKILL a fifth of the way in and restarted at four fifths. Failed calls counted.
3. **Redis killed**: ``--writers`` threads record interactions (a new user each) as fast as the
   gateway acknowledges them; Redis is killed with SIGKILL, restarted on its AOF, and the writers
   go on. Then every acknowledged write is looked up on every retrieval replica.

    python -m shortlist.perf.replicas [--artifacts DIR] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from shortlist.common.artifacts import resolve
from shortlist.common.eventid import StreamId
from shortlist.common.stack import Stack
from shortlist.perf.workload import fit_small_artifact
from shortlist.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
)


def _pct(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {"p50": round(float(np.percentile(a, 50)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "n": len(a)}


def read_your_writes(stub, item_ids: Sequence[str], users: int) -> dict[str, Any]:
    first, second, added, waited, reflected = [], [], [], [], 0
    for n in range(users):
        user = f"ryw-{time.time_ns()}-{n}"
        stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
            user_id=user, item_id=item_ids[n % len(item_ids)]), timeout=5)
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            response = stub.Recommend(gateway_pb2.RecommendRequest(user_id=user, k=10,
                                                                   debug=True), timeout=5)
            times.append((time.perf_counter() - t0) * 1e3)
            if len(times) == 1:
                reflected += response.segment == common_pb2.USER_SEGMENT_LIGHT
                waited.append(response.timings_ms["retrieval.wait"])
        first.append(times[0])
        second.append(times[1])
        added.append(times[0] - times[1])
    return {"users": users, "reflected": reflected,
            "reflected_share": round(reflected / users, 4),
            "waited_ms": _pct(waited), "first_ms": _pct(first), "second_ms": _pct(second),
            "first_minus_second_ms": _pct(added)}


def replica_killed(stack: Stack, rate: float, seconds: float) -> dict[str, Any]:
    errors: list[str] = []
    served = degraded = 0
    kill_at, restart_at = seconds / 5, seconds * 4 / 5
    with grpc.insecure_channel(stack.address("gateway")) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        start = time.monotonic()
        killed = restarted = False
        n = 0
        while (now := time.monotonic() - start) < seconds:
            if not killed and now >= kill_at:
                stack.stop_one("retrieval-2", sig=signal.SIGKILL)
                killed = True
            if killed and not restarted and now >= restart_at:
                threading.Thread(target=stack.start_one, args=("retrieval-2",),
                                 daemon=True).start()
                restarted = True
            time.sleep(max(0.0, start + n / rate - time.monotonic()))
            try:
                r = stub.Recommend(gateway_pb2.RecommendRequest(user_id=f"u{n % 1000}", k=10),
                                   timeout=2)
                served += 1
                degraded += r.degraded
            except grpc.RpcError as exc:
                errors.append(f"{exc.code().name}: {exc.details()}")
            n += 1
    return {"rate": rate, "seconds": seconds, "requests": n, "served": served,
            "failed": len(errors), "degraded": degraded, "errors": errors[:5],
            "killed_at_s": kill_at, "restarted_at_s": restart_at}


def redis_killed(stack: Stack, item_ids: Sequence[str], writers: int,
                 seconds: float) -> dict[str, Any]:
    acked: list[tuple[str, str]] = []
    refused: list[str] = []
    stop = threading.Event()

    def writer(w: int) -> None:
        with grpc.insecure_channel(stack.address("gateway")) as channel:
            stub = gateway_pb2_grpc.GatewayStub(channel)
            k = 0
            while not stop.is_set():
                user = f"aof-{time.time_ns()}-{w}-{k}"
                try:
                    r = stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
                        user_id=user, item_id=item_ids[k % len(item_ids)],
                        client_event_id=user), timeout=5)
                    acked.append((user, r.event_id))
                except grpc.RpcError as exc:
                    refused.append(f"{exc.code().name}: {exc.details()}")
                k += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    time.sleep(seconds / 2)
    stack.redis.kill()
    n_at_kill = len(acked)
    time.sleep(1.0)
    t0 = time.monotonic()
    stack.redis.start()
    back_s = time.monotonic() - t0
    time.sleep(seconds / 2)
    stop.set()
    for t in threads:
        t.join()
    last = str(max(StreamId.parse(e) for _, e in acked))
    lost = {}
    for name in stack.members("retrieval"):
        with grpc.insecure_channel(stack.address(name)) as channel:
            stub = retrieval_pb2_grpc.RetrievalStub(channel)
            lost[name] = sum(stub.Retrieve(retrieval_pb2.RetrieveRequest(
                user_id=u, after_event_id=last), timeout=10).user.history_length != 1
                for u, _ in acked)
    return {"writers": writers, "acknowledged": len(acked), "acknowledged_before_kill":
            n_at_kill, "refused_while_down": len(refused), "refused_sample": refused[:2],
            "redis_restart_s": round(back_s, 3), "lost_per_replica": lost}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shortlist.perf.replicas", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", type=Path, default=None,
                   help="artifact root to serve (default: fit a small one first)")
    p.add_argument("--users", type=int, default=500, help="read-your-writes users")
    p.add_argument("--rate", type=float, default=50.0, help="Recommend/s while a replica dies")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the kill run")
    p.add_argument("--writers", type=int, default=8, help="writers while Redis dies")
    p.add_argument("--output", type=Path, default=None, help="also write the results as JSON")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="shortlist-replicas-") as tmp:
        root = args.artifacts or fit_small_artifact(Path(tmp) / "artifacts")
        catalog = json.loads((resolve(root) / "catalog.json").read_text())
        item_ids = catalog["item_ids"][:500]
        stack = Stack.on_free_ports(root, replicas=2, log_dir=Path(tmp) / "logs",
                                    state_dir=Path(tmp) / "state")
        with stack:
            with grpc.insecure_channel(stack.address("gateway")) as channel:
                stub = gateway_pb2_grpc.GatewayStub(channel)
                for n in range(50):  # warm every server's code paths
                    stub.Recommend(gateway_pb2.RecommendRequest(user_id=f"u{n}"), timeout=5)
                results = {"read_your_writes": read_your_writes(stub, item_ids, args.users)}
            print("read your writes:", json.dumps(results["read_your_writes"]), flush=True)
            results["replica_killed"] = replica_killed(stack, args.rate, args.seconds)
            print("replica killed:", json.dumps(results["replica_killed"]), flush=True)
            results["redis_killed"] = redis_killed(stack, item_ids, args.writers, 4.0)
            print("redis killed:", json.dumps(results["redis_killed"]), flush=True)
    if args.output:
        args.output.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
