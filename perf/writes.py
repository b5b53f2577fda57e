"""Acknowledged writes per second through retrieval's real write path, and Retrieve meanwhile.

``N`` writer threads call ``RetrievalState.record_interaction`` on a real state (a loaded
version, its event log a fresh SQLite file on disk: WAL, ``synchronous=FULL``) as fast as it
returns, for ``--seconds`` per writer count. A write counts once the call has returned, which
is when it is acknowledged: durable in the log and applied to memory. One reader thread calls
``Retriever.retrieve`` (as the Retrieve RPC does) throughout, first with no writers as the
baseline, so the table also shows what the writes cost readers.

    python -m shortlist.perf.writes [--writers 1,8,32] [--seconds 5] [--artifacts DIR]
                                    [--dir DIR] [--backend embedded|redis] [--output FILE]

``--backend redis`` measures the shared state backend instead (``retrieval.shared``): a local
``redis-server`` with its AOF synced on every write (in ``--dir``), each write one append
acknowledged once Redis has synced it, applied by the state's tailer.

No server is started and none is imported (``tests/test_layering.py``, rule g): the numbers
are the log and the apply path without gRPC, so they bound what the server can acknowledge.
Without ``--artifacts`` a small model is fitted in a temporary directory first. The log goes
to ``--dir`` (default: the system's temporary directory), which must be a real disk: on a
tmpfs an fsync costs nothing and the numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shortlist.common import artifacts
from shortlist.perf.report import summarize
from shortlist.perf.workload import fit_small_artifact
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.retrieval.eventlog import EventLog
from shortlist.retrieval.online import RetrievalState
from shortlist.retrieval.retriever import RetrieveQuery, Retriever
from shortlist.retrieval.shared import SharedState
from shortlist.retrieval.stream import StreamLog

logger = logging.getLogger(__name__)

# Distinct users per writer thread: apply_interaction counts the user's distinct items, which
# grows with their history, so writes are spread over many users to keep that cost flat.
USERS_PER_WRITER = 500
# The server's default max_candidates_limit (RetrievalSettings; perf may not import settings).
MAX_CANDIDATES_LIMIT = 2000


def open_state(version_dir: Path, log_path: Path) -> RetrievalState:
    """A RetrievalState serving ``version_dir`` over a new event log at ``log_path``, built as
    the retrieval server builds it (``retrieval.server.loader``)."""
    manifest = artifacts.read_manifest(version_dir)
    models = RetrievalModels.load(version_dir)
    state = RetrievalState(EventLog(log_path))
    retriever = Retriever(models, manifest.version, MAX_CANDIDATES_LIMIT)
    state.swap(state.prepare(retriever, manifest.data.get("events")))
    return state


def open_shared_state(version_dir: Path, url: str) -> SharedState:
    """A SharedState serving ``version_dir`` on the stream at ``url``, as the server builds it."""
    manifest = artifacts.read_manifest(version_dir)
    state = SharedState(StreamLog(url))
    retriever = Retriever(RetrievalModels.load(version_dir), manifest.version,
                          MAX_CANDIDATES_LIMIT)
    state.swap(state.prepare(retriever, manifest.data.get("events")))
    return state


def _retrieve_loop(retriever: Retriever, users: list[str], stop: threading.Event,
                   out: list[float]) -> None:
    i = 0
    while not stop.is_set():
        start = time.perf_counter()
        retriever.retrieve(RetrieveQuery(user_id=users[i % len(users)], k=10))
        out.append((time.perf_counter() - start) * 1e3)
        i += 1


def run(state: Any, n_writers: int, seconds: float, item_ids: Sequence[str],
        read_users: Sequence[str], tag: str = "", seed: int = 0) -> dict[str, Any]:
    """``n_writers`` threads writing for ``seconds`` (0 writers: the reader alone).

    ``state`` is anything with ``record_interaction`` and ``retriever`` (a RetrievalState, or
    an older implementation loaded under another name to compare against). Only writes
    acknowledged inside the window count; errors are counted by type, never retried.
    """
    stop = threading.Event()
    start_line = threading.Barrier(n_writers + 2)
    acked_at: list[list[float]] = [[] for _ in range(n_writers)]
    latencies: list[list[float]] = [[] for _ in range(n_writers)]
    errors: Counter[str] = Counter()
    retrieve_ms: list[float] = []
    now = int(time.time())

    def writer(w: int) -> None:
        rng = np.random.default_rng(seed * 1000 + w)
        picks = rng.integers(0, len(item_ids), 1 << 16).tolist()
        start_line.wait()
        k = 0
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                state.record_interaction(f"perf{tag}-w{w}-u{k % USERS_PER_WRITER}",
                                         item_ids[picks[k % len(picks)]], 1.0, now)
            except Exception as exc:  # counted and reported; the run goes on
                errors[type(exc).__name__] += 1
            else:
                t1 = time.perf_counter()
                acked_at[w].append(t1)
                latencies[w].append((t1 - t0) * 1e3)
            k += 1

    def reader() -> None:
        start_line.wait()
        _retrieve_loop(state.retriever, list(read_users), stop, retrieve_ms)

    threads = [threading.Thread(target=writer, args=(w,), daemon=True)
               for w in range(n_writers)]
    threads.append(threading.Thread(target=reader, daemon=True))
    counters = _commit_counters(state)
    for t in threads:
        t.start()
    start_line.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    ended = time.perf_counter()
    stop.set()
    for t in threads:
        t.join()
    acked = sum(1 for times in acked_at for t in times if t <= ended)
    out: dict[str, Any] = {"writers": n_writers, "seconds": round(ended - began, 3),
                           "retrieve": summarize(retrieve_ms)}
    if n_writers:
        out.update({"acked": acked, "acked_per_s": round(acked / (ended - began), 1),
                    "ack_latency": summarize([x for xs in latencies for x in xs]),
                    "errors": dict(errors)})
        after = _commit_counters(state)
        if counters is not None and after[0] > counters[0]:
            out["mean_batch"] = round((after[1] - counters[1]) / (after[0] - counters[0]), 2)
    return out


def _commit_counters(state: Any) -> tuple[int, int] | None:
    """(commits, writes committed) of a group-committing state; None for one without (an
    older implementation measured for comparison commits each write alone)."""
    if not hasattr(state, "commits"):
        return None
    return state.commits, state.committed_writes


def measure(state: Any, writers: Sequence[int], seconds: float,
            tag: str = "") -> list[dict[str, Any]]:
    """The reader alone, then each writer count in turn, on one state."""
    models = state.retriever.models
    item_ids = models.catalog.vocab.all_ids
    read_users = [models.users.id(u) for u in range(min(len(models.users), 200))]
    results = []
    for n in [0, *writers]:
        res = run(state, n, seconds, item_ids, read_users, f"{tag}{n}")
        logger.info("measured %s", json.dumps(res))
        results.append(res)
    return results


def table(results: Sequence[dict[str, Any]]) -> str:
    rows = ["| writers | acked writes/s | mean batch | ack p50 ms | ack p99 ms | "
            "Retrieve p50 ms | Retrieve p99 ms | errors |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        ack = r.get("ack_latency", {})
        ret = r["retrieve"]
        rows.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
            r["writers"], r.get("acked_per_s", "-"), r.get("mean_batch", "-"),
            _ms(ack.get("p50_ms")),
            _ms(ack.get("p99_ms")), _ms(ret.get("p50_ms")), _ms(ret.get("p99_ms")),
            r.get("errors") or "-"))
    return "\n".join(rows)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ints(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m shortlist.perf.writes",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--writers", type=_ints, default=[1, 8, 32],
                   help="concurrent writer threads, one run per count (default 1,8,32)")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    p.add_argument("--artifacts", type=Path, default=None,
                   help="artifact root or version directory; default: fit a small model")
    p.add_argument("--dir", type=Path, default=None,
                   help="where the event log is created (a real disk; default: the system's "
                        "temporary directory)")
    p.add_argument("--backend", choices=["embedded", "redis"], default="embedded",
                   help="the embedded SQLite log (default) or the shared Redis stream, on a "
                        "redis-server started here")
    p.add_argument("--output", type=Path, default=None, help="also write the results as JSON")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="writes-", dir=args.dir) as tmp:
        if args.artifacts is None:
            print("no --artifacts: fitting a small model first", file=sys.stderr)
            version_dir = fit_small_artifact(Path(tmp), n_users=1000, n_items=2000,
                                             n_interactions=30_000, dim=32, rounds=20,
                                             eval_users=100)
        else:
            version_dir = artifacts.resolve(args.artifacts)
        redis = None
        if args.backend == "redis":
            from shortlist.common.redisproc import RedisProcess
            from shortlist.common.stack import free_port

            redis = RedisProcess(Path(tmp) / "redis", free_port()).start()
            state = open_shared_state(version_dir, redis.url)
        else:
            state = open_state(version_dir, Path(tmp) / "events.sqlite")
        try:
            load_start = os.getloadavg()
            results = measure(state, args.writers, args.seconds)
        finally:
            state.close()
            if redis is not None:
                redis.stop()
    report = {"command": " ".join(["python -m shortlist.perf.writes", *(
                  sys.argv[1:] if argv is None else argv)]),
              "cpus": os.cpu_count(), "loadavg_start": list(load_start),
              "loadavg_end": list(os.getloadavg()), "results": results}
    print(table(results))
    print(f"load average {load_start[0]:.2f} at start, {report['loadavg_end'][0]:.2f} at end "
          f"({os.cpu_count()} cpus)")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
