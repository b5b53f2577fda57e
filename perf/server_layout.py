"""Server layout: the size of the ranking server's thread pool, and one process or several.

Measured on the real ranking server (``python -m shortlist.ranking``, each one started through
``common.stack.Stack`` with its settings in the environment) under open-loop load from the one
driver, ``shortlist.clients.load``, with the workload's real Rank requests pre-serialised so
the client, sharing the cores with the servers, spends as little as possible per call.
Latencies run from each request's due time, and a call answered after the gateway's ranking
deadline counts as an error, not as a slow success: the gateway would have served that answer
degraded anyway.

Several processes of one server cannot share a port (the servers bind without SO_REUSEPORT),
so "N processes" is N servers on their own ports behind one round-robin target
(``ipv4:a,b``): every client channel connects to all of them and spreads its calls evenly,
which is how a gateway would spread its own calls. The first process also serves the
"1 process" alternative, so both share it; ``split`` says how each N-process run's calls fell,
from the servers' own /metrics request counters.

Idle servers cost nothing but memory, so every alternative's servers are up at once and the
alternatives take turns (rotated each round) at every rate.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from shortlist.clients import bench, load
from shortlist.common.settings import ServerSettings
from shortlist.common.stack import Stack
from shortlist.perf.report import Stats, error_count, result, rotated, summarize
from shortlist.perf.workload import Workload
from shortlist.v1 import ranking_pb2

# The gateway's ranking deadline (GatewaySettings.ranking_timeout_s' default; perf may not
# import the gateway, so tests/perf checks the two agree).
RANKING_DEADLINE_S = 0.3
_RANK = ranking_pb2.DESCRIPTOR.services_by_name["Ranking"]
RANK_METHOD = f"/{_RANK.full_name}/{_RANK.methods_by_name['Rank'].name}"
WORKERS_ENV = "SHORTLIST_RANKING_MAX_WORKERS"
DEFAULT_WORKERS = int(ServerSettings.model_fields["max_workers"].default)
ROUND_ROBIN = ("grpc.service_config",
               json.dumps({"loadBalancingConfig": [{"round_robin": {}}]}))
MAX_MESSAGE_BYTES = 64 << 20
# Blocking calls through every channel before a run's clock starts (connections, caches).
WARMUP_CALLS = 16

Runs = dict[str, dict[str, list[Stats]]]


@contextlib.contextmanager
def ranking_servers(version_dir: Path, envs: Mapping[str, Mapping[str, str]],
                    log_dir: Path | None = None) -> Iterator[dict[str, Stack]]:
    """One real ranking server per entry of ``envs`` (name -> its settings), all started
    before the first yields and stopped after; each logs to ``log_dir/<n>/ranking.log``."""
    with tempfile.TemporaryDirectory(prefix="server-layout-") as tmp, \
            contextlib.ExitStack() as stack:  # servers stop before their logs are removed
        logs = Path(log_dir) if log_dir is not None else Path(tmp)
        servers = {}
        for n, (name, env) in enumerate(envs.items()):
            server = Stack.only("ranking", version_dir, metrics=True, env=dict(env),
                                log_dir=logs / str(n))
            servers[name] = stack.enter_context(server)
        yield servers


def target(servers: Sequence[Stack]) -> str:
    """One round-robin target over these servers' addresses."""
    return "ipv4:" + ",".join(s.address("ranking") for s in servers)


def served(server: Stack) -> int:
    """Rank calls the server has handled so far (every status), from its /metrics."""
    scraped = bench.scrape(server.metrics_address("ranking"))
    return int(sum(n for (rpc, _code), n in scraped.requests.items() if rpc == "Rank"))


def stats_of(res: load.LoadResult) -> Stats:
    """One run at one rate: latency of the answered calls (from their due times), counts,
    throughput over the time to the last answer, and how far the sender fell behind."""
    codes = res.codes()
    ok = codes.pop("OK", 0)
    unanswered = codes.pop(load.CLIENT_UNANSWERED, 0)
    last = res.last_answer_s("OK")
    return {**summarize(res.latencies_ms("OK")), "sent": res.offered, "ok": ok,
            "errors": dict(codes), "unanswered": unanswered, "offered_rps": res.rate,
            "throughput_rps": ok / last if ok and last > 0 else 0.0,
            "max_send_lag_ms": res.max_send_lag_ms}


def run_once(address: str, payloads: Sequence[bytes], rate: float, seconds: float,
             channels: int = 8, timeout_s: float = RANKING_DEADLINE_S,
             warmup: int = WARMUP_CALLS) -> Stats:
    """``rate`` Rank calls per second for ``seconds`` against ``address`` (one server or a
    round-robin list), through ``channels`` channels with a connection each."""
    options = [ROUND_ROBIN, ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
               ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
    with load.channels(address, channels, options, ready_timeout_s=30.0) as chans:
        calls = [c.unary_unary(RANK_METHOD, request_serializer=None,
                               response_deserializer=ranking_pb2.RankResponse.FromString)
                 for c in chans]
        return stats_of(load.open_loop(calls, payloads, rate, duration_s=seconds,
                                       timeout_s=timeout_s, warmup=warmup))


def _measure(runs: Runs, name: str, address: str, payloads: Sequence[bytes],
             rates: Sequence[float], seconds: float, channels: int, timeout_s: float) -> None:
    for rate in rates:
        got = run_once(address, payloads, rate, seconds, channels, timeout_s)
        runs.setdefault(f"{rate:g} req/s", {}).setdefault(name, []).append(got)


def pool_runs(runs: list[Stats]) -> Stats:
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
    out["best_round_errors"] = min(error_count(r) for r in runs)
    if timed:
        out["best_round_p99_ms"] = min(r["p99_ms"] for r in timed)
        out.update(p50_ms=float(np.median([r["p50_ms"] for r in timed])),
                   p99_ms=max(r["p99_ms"] for r in timed),
                   mean_ms=float(np.average([r["mean_ms"] for r in timed],
                                            weights=[r["n"] for r in timed])))
    return out


def pooled(runs: Runs) -> dict[str, dict[str, Stats]]:
    return {case: {name: pool_runs(rs) for name, rs in by_alt.items()}
            for case, by_alt in runs.items()}


def _payloads(w: Workload) -> list[bytes]:
    return [r.SerializeToString() for r in w.requests]


def measure_workers(w: Workload, rates: Sequence[float] = (20.0,), seconds: float = 1.0,
                    rounds: int = 1, workers: Sequence[int] = (2, DEFAULT_WORKERS, 16),
                    channels: int = 8, timeout_s: float = RANKING_DEADLINE_S,
                    log_dir: Path | None = None) -> dict:
    """The ranking server with each thread-pool size (``SHORTLIST_RANKING_MAX_WORKERS``)."""
    sizes = sorted({*workers, DEFAULT_WORKERS})
    names = {f"{n} workers": n for n in sizes}
    payloads = _payloads(w)
    runs: Runs = {}
    with ranking_servers(w.version_dir, {name: {WORKERS_ENV: str(n)}
                                         for name, n in names.items()}, log_dir) as servers:
        addresses = {name: target([s]) for name, s in servers.items()}
        for r in range(max(1, rounds)):
            for name in rotated(list(names), r):
                _measure(runs, name, addresses[name], payloads, rates, seconds, channels,
                         timeout_s)
        handled = {name: served(s) for name, s in servers.items()}
    return result("server_workers", "thread-pool size of the ranking server",
                  f"{DEFAULT_WORKERS} workers", pooled(runs), server=True, served=handled,
                  deadline_s=timeout_s,
                  notes=f"the real ranking server, one process per size, max_concurrent_rpcs "
                        f"as configured; open-loop client with {channels} channels in the "
                        f"parent process on the same cores; errors include calls past the "
                        f"deadline ({timeout_s:g} s, the gateway's ranking timeout); 'served': "
                        f"Rank calls each server handled, warm-up included")


def measure_processes(w: Workload, rates: Sequence[float] = (20.0,), seconds: float = 1.0,
                      rounds: int = 1, workers: int = DEFAULT_WORKERS, channels: int = 8,
                      processes: int = 2, timeout_s: float = RANKING_DEADLINE_S,
                      log_dir: Path | None = None) -> dict:
    """One ranking server process versus ``processes`` of them behind one round-robin target.

    The kernel does not spread calls here, the client's channels do: each channel connects to
    every process and takes them in turn, so several channels are not needed for the spread,
    only for realistic concurrency. ``split`` holds each N-process run's calls per process.
    """
    single, multi = "1 process", f"{processes} processes"
    payloads = _payloads(w)
    runs: Runs = {}
    split: list[list[int]] = []
    env = {WORKERS_ENV: str(workers)}
    with ranking_servers(w.version_dir, {str(n): env for n in range(processes)},
                         log_dir) as servers:
        procs = list(servers.values())
        addresses = {single: target(procs[:1]), multi: target(procs)}
        for r in range(max(1, rounds)):
            for name in rotated([multi, single], r):
                before = [served(p) for p in procs]
                _measure(runs, name, addresses[name], payloads, rates, seconds, channels,
                         timeout_s)
                if name == multi:
                    split.append([served(p) - b for p, b in zip(procs, before, strict=True)])
    return result("processes", "one server process, or several behind one round-robin target",
                  single, pooled(runs), server=True, split=split, deadline_s=timeout_s,
                  notes=f"real ranking servers with {workers} workers each on their own "
                        f"ports, client-side round robin over them; client with {channels} "
                        f"channels in the parent process; 'split': calls per process in each "
                        f"{multi} run (warm-up included); errors include calls past the "
                        f"deadline ({timeout_s:g} s)")
