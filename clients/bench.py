"""`shortlist-bench`: open-loop load against the gateway, with per-stage latency percentiles.

Requests fall due at a fixed rate whether or not earlier ones have answered (open loop, the
driver in ``shortlist.clients.load``), so queueing shows up in the tail instead of slowing the
generator down. The client's latency (``end_to_end``, ``failed.<CODE>``) runs from each
request's due time, not from when it left: a sender thread starved of CPU sends late, and
timing from the send would hide that delay. How late requests left is reported beside it
(``send_lag_ms``). Each response carries the servers' own stage timings (``debug``), which are
aggregated next to the client's end-to-end latency.

Network and serialisation are not measured anywhere; they are what is left over at each hop,
so each is a difference of two clocks on one path (clamped at 0):

- ``network.client_gateway``: the client's end-to-end minus the gateway's ``total`` (so it
  also holds the client's own send lag);
- ``network.gateway_retrieval``: the gateway's ``retrieval`` call minus ``retrieval.total``,
  the time inside retrieval's handler (so it also holds the gateway's retries and the
  client-side call work);
- ``network.gateway_ranking``: the same for ranking;
- ``network``: their sum, for the requests that have at least the first.

``--metrics NAME=HOST:PORT`` also reads the servers' Prometheus endpoints before and after the
run. Their histograms count every request the servers saw in that window, from any client and
including the ones the harness gave up on, so they answer "what did the servers see", while the
``stages`` table answers "what did this client's answered requests see". Percentiles from
buckets are estimates (linear interpolation within a bucket, as Prometheus'
``histogram_quantile``): good to the bucket width, no finer.

Server CPU per Recommend: with ``--metrics``, each server's ``process_cpu_seconds_total`` (its
process's user + system CPU, the kernel's counter in clock ticks) is read before and after the
run too, and the difference is divided by the Recommend calls the gateway counted in the same
window (``cpu``: per server, their total, and the harness's own CPU beside them). The scrape
itself costs the server a little CPU, once per window; at any useful run length that is lost
in the tick.

``--floor`` runs the same load (rate, duration, warm-up, concurrency, request mix) right after,
against three no-op servers of Shortlist's shape started as processes on free ports
(``shortlist.clients.floor``: real payload sizes, no work), and measures it the same way:
latency from due time, CPU from the same kernel counter (read in ``/proc/<pid>/stat``, since
the floor runs no /metrics). ``ratios`` are Shortlist over floor for the end-to-end p50 and
p99 and for CPU per request. On a shared machine the absolute numbers move with whatever else
runs; two runs minutes apart on the same cores move together much more, so the ratios say how
far Shortlist is from what its shape alone costs.

``--plot`` draws where the milliseconds go. Percentiles of stages do not add up to the
end-to-end percentile, so the stacked bars are built per request instead: each answered
request's end-to-end is split into leaf parts that add up to it exactly (network, gateway
overhead, each retrieval stage, "retrieval other", each ranking stage, "ranking other"), and
each bar is the mean split of the requests whose end-to-end lies in a narrow band around that
percentile (p45-p55, p94-p96, p98.5-p99.5). Means, not medians, so the segments add up to the
band's mean end-to-end; the end-to-end percentile itself is marked on the bar. A second panel
shows each stage's own p50 and p99. The report keeps the same numbers as ``composition``.
"""

from __future__ import annotations

import argparse
import html
import http.client
import json
import logging
import math
import os
import re
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from shortlist.clients import floor as floor_stack
from shortlist.clients import load
from shortlist.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

logger = logging.getLogger(__name__)

MIX = (("established", 0.7), ("new", 0.1), ("onboarding", 0.1), ("filtered", 0.1))
UPSTREAMS = ("retrieval", "ranking")
HOPS = {"retrieval": "network.gateway_retrieval", "ranking": "network.gateway_ranking"}
# The end-to-end percentiles the plot explains, and the band of requests each one is read from.
BANDS = {"p50": (45.0, 50.0, 55.0), "p95": (94.0, 95.0, 96.0), "p99": (98.5, 99.0, 99.5)}
# Stages in pipeline order. "*" holds the place of the stages a server names after what it ran,
# sorted by name: retrieval reports one per generator (the artifact decides which), then merge.
STAGE_ORDER = ("total", "gateway", "retrieval", "ranking", "*", "merge", "features", "model",
               "mmr")
QUANTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}
STAGE_HISTOGRAM = "shortlist_stage_seconds_bucket"
REQUEST_COUNTER = "shortlist_requests_total"
# prometheus-client's process collector: utime + stime of /proc/self/stat, in seconds.
CPU_COUNTER = "process_cpu_seconds_total"
# The RPC whose count CPU is divided by: one Recommend is one unit of work for every server.
RECOMMEND = "Recommend"
# Outcomes the client gave itself: the request never reached a server.
NOT_SENT = (load.CLIENT_SATURATED,)


def network_parts(end_to_end_ms: float, timings: Mapping[str, float]) -> dict[str, float]:
    """The per-hop network/serialisation remainders of one request, and their sum.

    A hop is only reported when both of its clocks are there: a degraded request has no
    ``ranking.total``, and guessing its hop would hide the failed call's time in "network".
    """
    parts: dict[str, float] = {}
    if "total" in timings:
        parts["network.client_gateway"] = max(0.0, end_to_end_ms - timings["total"])
    for upstream, hop in HOPS.items():
        inner = timings.get(f"{upstream}.total")
        if upstream in timings and inner is not None:
            parts[hop] = max(0.0, timings[upstream] - inner)
    if "network.client_gateway" in parts:
        parts["network"] = sum(parts.values())
    return parts


def _ordered(names: Iterable[str]) -> list[str]:
    rank = {n: i for i, n in enumerate(STAGE_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, rank["*"]), n))


def leaf_breakdown(end_to_end_ms: float, timings: Mapping[str, float]) -> dict[str, float]:
    """One answered request's end-to-end split into parts that do not overlap.

    The parts add up to ``end_to_end_ms`` (up to the clamping at 0): network (every hop),
    the gateway's own work, each server's top-level stages and the rest of each server's
    handler ("<server>.other"). When an upstream reported no ``total`` (ranking failed or was
    late and the answer is degraded) the whole call counts as "<server>.other".
    """
    leaves = {"network": network_parts(end_to_end_ms, timings).get("network", 0.0),
              "gateway": timings.get("gateway", 0.0)}
    for upstream in UPSTREAMS:
        prefix = upstream + "."
        inner = timings.get(prefix + "total")
        if inner is None:
            leaves[prefix + "other"] = timings.get(upstream, 0.0)
            continue
        stages = {k[len(prefix):]: v for k, v in timings.items() if k.startswith(prefix)
                  and k != prefix + "total" and "." not in k[len(prefix):]}
        for name in _ordered(stages):
            leaves[prefix + name] = stages[name]
        leaves[prefix + "other"] = max(0.0, inner - sum(stages.values()))
    return leaves


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The q-quantile of a Prometheus histogram, as PromQL's ``histogram_quantile`` computes it.

    ``buckets`` are (upper bound, cumulative count) pairs, ``+Inf`` included. Observations are
    assumed spread evenly within a bucket, so the answer is exact only to the bucket width;
    the lowest bucket starts at 0, and a rank in the ``+Inf`` bucket answers the highest finite
    bound (nothing better is known). None when the histogram is empty.
    """
    if not buckets:
        return None
    ordered = sorted(buckets)
    total = ordered[-1][1]
    if total <= 0 or not math.isinf(ordered[-1][0]):
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in ordered:
        count = max(count, below)  # counts must not decrease; a torn scrape could break that
        if count >= rank and count > 0:
            if math.isinf(upper):
                return lower if len(ordered) > 1 else None
            if upper <= 0:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


@dataclass
class Scrape:
    """What one /metrics endpoint said at one moment (counters since the server started)."""

    stages: dict[str, dict[float, float]] = field(default_factory=dict)  # stage -> le -> n
    requests: dict[tuple[str, str], float] = field(default_factory=dict)  # (rpc, code) -> n
    cpu_s: float | None = None  # process_cpu_seconds_total; None when not exposed


_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of each sample in Prometheus' text exposition format.

    The format is line-based and simple; parsing it here keeps the clients free of anything
    but the contract and the standard library. Comments, type lines and lines that are not
    a sample are skipped.
    """
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line.strip())
        if m is None:
            continue
        labels = {k: re.sub(r"\\.", lambda e: _ESCAPES.get(e.group(0), e.group(0)), v)
                  for k, v in _LABEL.findall(m.group(2) or "")}
        try:
            yield m.group(1), labels, float(m.group(3))
        except ValueError:
            continue


def parse(text: str) -> Scrape:
    """The samples of one exposition the harness uses (see ``Scrape``)."""
    out = Scrape()
    for name, labels, value in samples(text):
        if name == STAGE_HISTOGRAM and "le" in labels and "stage" in labels:
            out.stages.setdefault(labels["stage"], {})[float(labels["le"])] = value
        elif name == REQUEST_COUNTER:
            key = (labels.get("rpc", ""), labels.get("code", ""))
            out.requests[key] = out.requests.get(key, 0.0) + value
        elif name == CPU_COUNTER and not labels:
            out.cpu_s = value
    return out


def scrape(address: str, timeout_s: float = 5.0) -> Scrape:
    """Read and parse one endpoint; ``address`` is HOST:PORT or a full URL."""
    url = address if "://" in address else f"http://{address}/metrics"
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (operator's URL)
        return parse(resp.read().decode())


def try_scrape(name: str, address: str, warnings: list[str],
               timeout_s: float = 5.0) -> Scrape | None:
    """A scrape that turns every failure into a warning: the load numbers are still worth it."""
    try:
        return scrape(address, timeout_s)
    except (OSError, ValueError, KeyError, http.client.HTTPException) as exc:
        warnings.append(f"metrics {name} ({address}): scrape failed: {exc}")
        return None


def scrape_difference(before: Scrape | None, after: Scrape) -> Scrape | None:
    """after - before; None when a counter went down (the server restarted in between)."""
    if before is None:
        return after
    diff = Scrape()
    for stage, buckets in after.stages.items():
        old = before.stages.get(stage, {})
        diff.stages[stage] = {le: n - old.get(le, 0.0) for le, n in buckets.items()}
    for key, n in after.requests.items():
        diff.requests[key] = n - before.requests.get(key, 0.0)
    if after.cpu_s is not None and before.cpu_s is not None:
        diff.cpu_s = after.cpu_s - before.cpu_s
    values = [n for b in diff.stages.values() for n in b.values()] + list(diff.requests.values())
    values += [diff.cpu_s] if diff.cpu_s is not None else []
    return None if any(n < 0 for n in values) else diff


def server_report(name: str, before: Scrape | None, after: Scrape | None,
                  warnings: list[str]) -> tuple[dict[str, dict], dict[str, int]]:
    """Per-stage percentile estimates and request counts by code for one endpoint's window."""
    if after is None:
        return {}, {}
    diff = scrape_difference(before, after)
    if diff is None:
        warnings.append(f"metrics {name}: counters went down during the run (server "
                        "restarted?); its numbers cover everything since it started")
        diff = after
    elif before is None:
        warnings.append(f"metrics {name}: no scrape before the run; its numbers cover "
                        "everything since the server started")
    stages: dict[str, dict] = {}
    for stage in _ordered(diff.stages):
        buckets = sorted(diff.stages[stage].items())
        count = int(round(buckets[-1][1])) if buckets else 0
        if count <= 0:
            continue
        row = {}
        for key, q in QUANTILES.items():
            v = histogram_quantile(q, buckets)
            row[key] = None if v is None else v * 1e3
        stages[f"{name}.{stage}"] = {**row, "count": count}
    codes: Counter = Counter()
    for (_rpc, code), n in diff.requests.items():
        if n > 0:
            codes[code] += int(round(n))
    return stages, dict(sorted(codes.items()))


def clock_tick_s() -> float:
    """The step of the kernel's CPU counters (1 / USER_HZ, 10 ms on Linux)."""
    try:
        return 1.0 / os.sysconf("SC_CLK_TCK")
    except (AttributeError, ValueError, OSError):
        return 0.01


def parse_proc_stat(text: str, tick_s: float | None = None) -> float:
    """User + system CPU seconds from the text of ``/proc/<pid>/stat``.

    The same two fields prometheus-client's process collector reads for
    ``process_cpu_seconds_total``, so /proc and /metrics agree. The command name (field 2) may
    hold spaces and parentheses: the fields are counted from the last ``)``.
    """
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) * (clock_tick_s() if tick_s is None else tick_s)


def proc_cpu_seconds(pid: int, proc_root: Path = Path("/proc")) -> float | None:
    """Process ``pid``'s CPU seconds so far (all its threads); None where /proc cannot tell."""
    try:
        return parse_proc_stat((proc_root / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def _cpu_row(cpu_s: float | None, requests: int, window_s: float) -> dict[str, float | None]:
    return {"cpu_s": cpu_s,
            "ms_per_request": cpu_s * 1e3 / requests if cpu_s is not None and requests else None,
            "cores": cpu_s / window_s if cpu_s is not None and window_s > 0 else None}


def cpu_report(before: Mapping[str, float | None], after: Mapping[str, float | None],
               requests: int, requests_from: str, window_s: float, source: str,
               warnings: list[str], client_cpu_s: float | None = None,
               label: str = "") -> dict:
    """CPU per Recommend, per server and in total, from CPU seconds read around a window.

    ``before``/``after``: server name -> process CPU seconds (None: unknown). ``requests``:
    the Recommend calls served in the window, which every server's CPU is divided by (one
    Recommend is one unit of work for the whole stack). ``cores`` is CPU seconds per second of
    the window: 1.0 keeps one core busy. The total is only given when every server's CPU is
    known, since a partial sum would compare unlike with unlike. ``client_cpu_s``, the
    harness's own CPU in the window, is reported beside it (it shares the machine), not in it.
    """
    servers: dict[str, dict] = {}
    for name in after:
        b, a = before.get(name), after.get(name)
        cpu = a - b if a is not None and b is not None and a >= b else None
        if cpu is None:
            warnings.append(f"{label}cpu {name}: no CPU counter before and after the run "
                            f"({source}); its CPU per request is unknown")
        servers[name] = _cpu_row(cpu, requests, window_s)
    known = [row["cpu_s"] for row in servers.values()]
    total = (_cpu_row(sum(known), requests, window_s)
             if known and all(c is not None for c in known) else None)
    if not requests:
        warnings.append(f"{label}cpu: no Recommend served in the window; no CPU per request")
    return {"source": source, "requests": requests, "requests_from": requests_from,
            "window_s": window_s, "resolution_s": clock_tick_s(), "servers": servers,
            "total": total, "client": _cpu_row(client_cpu_s, requests, window_s)}


def recommends_counted(before: Mapping[str, Scrape | None],
                       after: Mapping[str, Scrape | None]) -> int | None:
    """Recommend calls the servers counted between two scrapes (any status), None if no
    endpoint with both scrapes counts any (no gateway among them, or it restarted)."""
    total, seen = 0.0, False
    for name, late in after.items():
        early = before.get(name)
        if late is None or early is None:
            continue
        diff = scrape_difference(early, late)
        if diff is None:
            continue
        n = sum(v for (rpc, _code), v in diff.requests.items() if rpc == RECOMMEND)
        if any(rpc == RECOMMEND for rpc, _code in late.requests):
            seen = True
            total += n
    return int(round(total)) if seen else None


@dataclass
class Results:
    started: float = 0.0
    finished: float = 0.0
    sent: int = 0
    codes: Counter = field(default_factory=Counter)
    stages: dict[str, list[float]] = field(default_factory=dict)
    # (end_to_end_ms, leaf_breakdown) of every answered request that carried timings
    breakdowns: list[tuple[float, dict[str, float]]] = field(default_factory=list)
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
                extra = network_parts(end_to_end_ms, timings)
                for key, ms in {**timings, **extra}.items():
                    self.stages.setdefault(key, []).append(ms)
                if "total" in timings:
                    self.breakdowns.append((end_to_end_ms,
                                            leaf_breakdown(end_to_end_ms, timings)))
            self.degraded += degraded

    @classmethod
    def of(cls, result: load.LoadResult) -> Results:
        """The aggregates of a load run (each record's ``observed``: whether it was degraded)."""
        res = cls(started=result.started, finished=result.finished, sent=result.offered)
        for r in result.records:
            res.add(r.latency_ms, r.status, r.timings_ms or None, bool(r.observed))
        return res

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
                "duration_s": span, "stages": stages,
                "composition": composition(self.breakdowns), "warnings": []}


def composition(breakdowns: Sequence[tuple[float, Mapping[str, float]]]) -> dict[str, dict]:
    """Mean leaf split of the requests around each end-to-end percentile (see the module doc).

    A band always holds at least the request at the percentile's rank, so small runs still
    get a (noisier) bar; ``requests`` says how many it is the mean of.
    """
    if not breakdowns:
        return {}
    e2e = np.asarray([b[0] for b in breakdowns])
    order = np.argsort(e2e, kind="stable")
    n = len(e2e)
    leaves = _leaf_order({k for _, b in breakdowns for k in b})
    out = {}
    for label, (lo, q, hi) in BANDS.items():
        i0 = int(math.floor(lo / 100 * (n - 1)))
        i1 = int(math.ceil(hi / 100 * (n - 1)))
        picked = [breakdowns[i] for i in order[i0:i1 + 1]]
        out[label] = {
            "end_to_end_ms": float(np.percentile(e2e, q)), "band": [lo, hi],
            "requests": len(picked),
            "mean_end_to_end_ms": float(np.mean([p[0] for p in picked])),
            "mean_ms": {k: float(np.mean([p[1].get(k, 0.0) for p in picked])) for k in leaves},
        }
    return out


def _leaf_order(names: Iterable[str]) -> list[str]:
    names = set(names)
    out = [n for n in ("network", "gateway") if n in names]
    for upstream in UPSTREAMS:
        prefix = upstream + "."
        own = [n[len(prefix):] for n in names if n.startswith(prefix) and n != prefix + "other"]
        out += [prefix + n for n in _ordered(own)]
        if prefix + "other" in names:
            out.append(prefix + "other")
    return out + sorted(names - set(out))


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


@dataclass
class Drive:
    """One measured load run and what was sampled right before and right after it."""

    result: load.LoadResult
    before: dict
    after: dict
    window_s: float  # from the sample before to the sample after
    client_cpu_s: float  # the harness's own CPU in that window


def warm_up(call: grpc.UnaryUnaryMultiCallable, make: Callable[[int], object], count: int,
            timeout_s: float, warnings: list[str], label: str = "") -> None:
    """``count`` calls one by one before anything is sampled: connections, lazy first-call
    paths are set up outside the window. A failure is a warning only."""
    failed: Counter = Counter()
    for i in range(count):
        try:
            call(make(i), timeout=timeout_s * 5)
        except grpc.RpcError as exc:
            failed[exc.code().name] += 1
    if failed:
        warnings.append(f"{label}warm-up: {sum(failed.values())} of {count} calls failed "
                        f"({', '.join(f'{c} {n}' for c, n in sorted(failed.items()))})")


def drive(target: str, rate: float, duration_s: float, users: list[str], timeout_s: float,
          max_in_flight: int, seed: int, warmup: int, sample: Callable[[], dict],
          warnings: list[str], label: str = "") -> Drive:
    """Warm up, ``sample()``, run the open loop, ``sample()`` again.

    Everything that makes two runs comparable is decided here, once: the request mix (from
    ``seed``), the warm-up, the open loop and where the window starts and ends.
    """
    rng = np.random.default_rng(seed)
    seen_items: list[str] = []

    def observe(response: gateway_pb2.RecommendResponse) -> bool:
        if response.items and len(seen_items) < 5000:
            seen_items.append(response.items[0].item_id)
        return response.degraded

    def make(_i: int) -> gateway_pb2.RecommendRequest:
        return make_request(rng, users, seen_items)

    with load.channels(target) as (channel,):
        stub = gateway_pb2_grpc.GatewayStub(channel)
        warm_up(stub.Recommend, make, warmup, timeout_s, warnings, label)
        before = sample()
        started, cpu = time.perf_counter(), time.process_time()
        result = load.open_loop(stub.Recommend, make, rate, duration_s=duration_s,
                                timeout_s=timeout_s, max_in_flight=max_in_flight,
                                observe=observe)
        client_cpu_s = time.process_time() - cpu
        after = sample()
        window_s = time.perf_counter() - started
    return Drive(result, before, after, window_s, client_cpu_s)


def load_report(result: load.LoadResult, rate: float, max_in_flight: int,
                warmup: int) -> dict:
    """The client's view of one run: counts, latencies from due time, the sender's lag."""
    report = Results.of(result).report()
    report["rate"], report["concurrency"], report["warmup"] = rate, max_in_flight, warmup
    report["latency_from"] = "due"
    lags = result.send_lags_ms()
    report["send_lag_ms"] = ({"p50_ms": float(np.percentile(lags, 50)),
                              "p99_ms": float(np.percentile(lags, 99)),
                              "max_ms": float(lags.max())} if len(lags) else {})
    return report


def sent_in_window(result: load.LoadResult) -> int:
    """Requests that left the client (every outcome but the client's own refusals)."""
    return sum(r.status not in NOT_SENT for r in result.records)


def run(target: str, rate: float, duration_s: float, users: list[str], timeout_s: float = 2.0,
        max_in_flight: int = 2000, seed: int = 42,
        metrics: Mapping[str, str] | None = None, warmup: int = 0) -> dict:
    """``rate`` requests per second fall due for ``duration_s``; returns the report.

    ``max_in_flight`` (``--concurrency``) bounds the requests awaiting an answer. A request
    that falls due while the bound is reached is not delayed (that would close the loop and
    hide the queueing): it is counted at once as a CLIENT_SATURATED error. Latencies run from
    each request's due time (``shortlist.clients.load``). ``warmup`` calls go one by one first.

    ``metrics`` (name -> HOST:PORT) are scraped right before the first request and right
    after the last answer, so the servers' histograms and CPU counters cover the run's window
    (``cpu``: CPU per Recommend the gateway counted; the client's count without a gateway).
    """
    metrics = dict(metrics or {})
    warnings: list[str] = []

    def sample() -> dict[str, Scrape | None]:
        return {name: try_scrape(name, addr, warnings) for name, addr in metrics.items()}

    d = drive(target, rate, duration_s, users, timeout_s, max_in_flight, seed, warmup, sample,
              warnings)
    report = load_report(d.result, rate, max_in_flight, warmup)
    if metrics:
        report["server_metrics"], report["server_requests"] = {}, {}
        for name in metrics:
            stages, codes = server_report(name, d.before[name], d.after[name], warnings)
            report["server_metrics"].update(stages)
            if d.after[name] is not None:
                report["server_requests"][name] = codes
        counted = recommends_counted(d.before, d.after)
        requests, requests_from = (
            (counted, "Recommend counted on /metrics (any status)") if counted is not None
            else (sent_in_window(d.result), "requests the harness sent (no gateway /metrics)"))
        report["cpu"] = cpu_report(
            {n: s.cpu_s if s else None for n, s in d.before.items()},
            {n: s.cpu_s if s else None for n, s in d.after.items()},
            requests, requests_from, d.window_s, f"{CPU_COUNTER} on /metrics", warnings,
            d.client_cpu_s)
    report["warnings"] = warnings
    return report


def run_floor(rate: float, duration_s: float, users: list[str], timeout_s: float = 2.0,
              max_in_flight: int = 2000, seed: int = 42, warmup: int = 0) -> dict:
    """The same load against the floor (``shortlist.clients.floor``), started here as three
    processes on free ports and stopped after; its report, measured as ``run`` measures.

    CPU comes from each process's ``/proc/<pid>/stat`` (the counter behind
    ``process_cpu_seconds_total``), divided by the requests sent in the window: the floor
    serves no /metrics, and nothing but this harness calls it.
    """
    warnings: list[str] = []
    with floor_stack.FloorStack() as stack:
        pids = stack.pids()

        def sample() -> dict[str, float | None]:
            return {role: proc_cpu_seconds(pid) for role, pid in pids.items()}

        d = drive(stack.address("gateway"), rate, duration_s, users, timeout_s, max_in_flight,
                  seed, warmup, sample, warnings, label="floor ")
        payload = stack.payload_bytes()
    report = load_report(d.result, rate, max_in_flight, warmup)
    del report["composition"]  # the floor reports no stages: nothing to split
    report["cpu"] = cpu_report(d.before, d.after, sent_in_window(d.result),
                               "requests the harness sent", d.window_s, "/proc/<pid>/stat",
                               warnings, d.client_cpu_s, label="floor ")
    report["payload_bytes"] = payload
    report["warnings"] = warnings
    return report


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _total_cpu_ms(report: dict) -> float | None:
    total = (report.get("cpu") or {}).get("total") or {}
    return total.get("ms_per_request")


def ratios(report: dict, floor: dict) -> dict[str, float | None]:
    """Shortlist over floor: end-to-end p50 and p99, and CPU per request (None: unknown)."""
    mine = report["stages"].get("end_to_end", {})
    base = floor["stages"].get("end_to_end", {})
    return {"p50": _ratio(mine.get("p50_ms"), base.get("p50_ms")),
            "p99": _ratio(mine.get("p99_ms"), base.get("p99_ms")),
            "cpu_per_request": _ratio(_total_cpu_ms(report), _total_cpu_ms(floor))}


def attach_floor(report: dict, floor: dict) -> dict:
    """``report`` with the floor's report and the ratios, and a warning where they are not
    like for like."""
    report["floor"] = floor
    report["ratios"] = ratios(report, floor)
    cpu = report.get("cpu")
    if cpu is None:
        report["warnings"].append("floor: no --metrics, so Shortlist's CPU per request is "
                                  "unknown and so is its ratio")
    elif len(cpu["servers"]) < len(floor["cpu"]["servers"]):
        report["warnings"].append(
            f"floor: Shortlist's CPU covers {len(cpu['servers'])} server(s) "
            f"({', '.join(cpu['servers'])}), the floor's {len(floor['cpu']['servers'])}: "
            "give --metrics for each server")
    return report


def _ms(v: float | None) -> str:
    return f"{v:>9.2f}" if v is not None else f"{'-':>9}"


def summary(report: dict) -> str:
    lines = [f"qps {report['qps']:.1f}  requests {report['requests']}  ok {report['ok']}  "
             f"degraded {report['degraded']}  errors {report['errors'] or 'none'}"]
    lag = report.get("send_lag_ms")
    if report.get("latency_from") == "due":
        lines.append("client latency from each request's due time (open loop"
                     + (f" at {report['rate']:g}/s" if "rate" in report else "") + ")"
                     + (f"; sender lag p99 {lag['p99_ms']:.2f} ms, max {lag['max_ms']:.2f} ms"
                        if lag else ""))
    lines.append(f"{'stage (client view)':<28}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}  (ms)")
    order = _stage_rows(report)
    names = order + sorted(set(report["stages"]) - set(order))
    for name in names:
        s = report["stages"].get(name)
        if s:
            lines.append(f"{name:<28}{s['p50_ms']:>9.2f}{s['p95_ms']:>9.2f}{s['p99_ms']:>9.2f}"
                         f"{s['max_ms']:>9.2f}")
    if report.get("server_metrics") is not None:
        lines += ["", f"{'stage (server /metrics)':<28}{'p50':>9}{'p95':>9}{'p99':>9}"
                      f"{'count':>9}  (ms, bucket-interpolated, all clients)"]
        for name, s in report["server_metrics"].items():
            lines.append(f"{name:<28}{_ms(s['p50_ms'])}{_ms(s['p95_ms'])}{_ms(s['p99_ms'])}"
                         f"{s['count']:>9}")
        for server, codes in report.get("server_requests", {}).items():
            counted = ", ".join(f"{c} {n}" for c, n in codes.items()) or "none"
            lines.append(f"requests seen by {server}: {counted}")
    floor = report.get("floor")
    if report.get("cpu") or floor:
        lines += ["", *cpu_lines(report, floor)]
    if floor:
        lines += ["", *floor_lines(report, floor)]
    for w in report.get("warnings", []):
        lines.append(f"warning: {w}")
    for w in (floor or {}).get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def _times(v: float | None) -> str:
    return f"{v:>8.2f}x" if v is not None else f"{'-':>9}"


def cpu_lines(report: dict, floor: dict | None) -> list[str]:
    """Server CPU per Recommend: Shortlist's servers, the floor's beside them, their ratio."""
    mine, base = report.get("cpu") or {}, (floor or {}).get("cpu") or {}
    cols = "" if floor is None else f"{'floor':>9}{'ratio':>9}"
    ticks = (mine or base).get("resolution_s", 0.01) * 1e3
    lines = [f"{'CPU per Recommend (ms)':<28}{'shortlist':>9}{cols}  "
             f"(process CPU, {ticks:g} ms ticks, / requests in the window)"]
    names = list(mine.get("servers", {}))
    names += [n for n in base.get("servers", {}) if n not in names]

    def ms(block: dict, *path: str) -> float | None:
        for key in path:
            block = (block or {}).get(key)
        return (block or {}).get("ms_per_request")

    rows = [(n, ("servers", n)) for n in names] + [("total", ("total",)),
                                                   ("harness (not in total)", ("client",))]
    for label, path in rows:
        a, b = ms(mine, *path), ms(base, *path)
        line = f"{label:<28}{_ms(a)}"
        if floor is not None:
            line += _ms(b) + (_times(_ratio(a, b)) if label == "total" else "")
        lines.append(line)
    for name, block in (("shortlist", mine), ("floor", base)):
        if block:
            lines.append(f"{name}: {block['requests']} {block['requests_from']} over "
                         f"{block['window_s']:.1f} s ({block['source']})")
    return lines


def floor_lines(report: dict, floor: dict) -> list[str]:
    """The floor's run in two lines and the Shortlist/floor latency ratios."""
    sizes = floor.get("payload_bytes", {})
    lag = floor.get("send_lag_ms") or {}
    lines = [f"floor (3 no-op servers; answers of {sizes.get('retrieve_response', '?')} B from "
             f"retrieval, {sizes.get('rank_response', '?')} B from ranking), same load: "
             f"qps {floor['qps']:.1f}  requests {floor['requests']}  ok {floor['ok']}  "
             f"errors {floor['errors'] or 'none'}"
             + (f"; sender lag p99 {lag['p99_ms']:.2f} ms" if lag else "")]
    lines.append(f"{'end-to-end (ms)':<28}{'shortlist':>9}{'floor':>9}{'ratio':>9}")
    mine = report["stages"].get("end_to_end", {})
    base = floor["stages"].get("end_to_end", {})
    for key in ("p50", "p99"):
        lines.append(f"{key:<28}{_ms(mine.get(key + '_ms'))}{_ms(base.get(key + '_ms'))}"
                     f"{_times(report['ratios'].get(key))}")
    r = report["ratios"]
    lines.append("shortlist / floor: " + "  ".join(
        f"{label} {f'{r[key]:.2f}x' if r.get(key) is not None else '-'}"
        for label, key in (("p50", "p50"), ("p99", "p99"), ("CPU per request", "cpu_per_request"))))
    return lines


# ---- the plot ------------------------------------------------------------------------------

# Retrieval in blues and teals, ranking in reds and oranges, neighbours told apart by lightness.
_BLUES = ("#08306b", "#2e86de", "#48c9b0", "#0b7285", "#74b9ff", "#5b5fc7")
_ORANGES = ("#a63603", "#f16913", "#fdbe85", "#d62728", "#fd8d3c", "#7f2704")


def _colours(leaves: Sequence[str]) -> dict[str, str]:
    colours = {"network": "#b39ddb", "gateway": "#8c8c8c",
               "retrieval.other": "#cfd8e3", "ranking.other": "#eadccb"}
    n = {"retrieval": 0, "ranking": 0}
    for leaf in leaves:
        family = leaf.split(".")[0]
        if leaf in colours:
            continue
        if family in n:
            palette = _BLUES if family == "retrieval" else _ORANGES
            colours[leaf] = palette[n[family] % len(palette)]
            n[family] += 1
        else:
            colours[leaf] = "#bdbdbd"
    return colours


def _label(leaf: str) -> str:
    if leaf == "network":
        return "network (all hops)"
    return leaf.replace(".other", " other").replace(".", ": ")


def _stage_rows(report: dict) -> list[str]:
    """The stages of the p50/p99 panel: end-to-end, the hops, then each server's stages."""
    stages = report.get("stages", {})
    first = ["end_to_end", "network", "network.client_gateway", "network.gateway_retrieval",
             "network.gateway_ranking", "total", "gateway"]
    rows = [s for s in first if s in stages]
    for upstream in UPSTREAMS:
        prefix = upstream + "."
        own = [n[len(prefix):] for n in stages if n.startswith(prefix) and n != prefix + "total"]
        rows += [s for s in (upstream, prefix + "total") if s in stages]
        rows += [prefix + n for n in _ordered(own)]
    return rows


def _title(report: dict) -> str:
    return (f"shortlist-bench: where the milliseconds go ({report.get('qps', 0):.1f} qps, "
            f"{report.get('ok', 0)} answered, {report.get('degraded', 0)} degraded)")


def floor_refs(report: dict) -> list[tuple[str, float]]:
    """The floor's end-to-end p50 and p99 as (label, ms), drawn as reference lines."""
    base = (report.get("floor") or {}).get("stages", {}).get("end_to_end", {})
    return [(f"floor {key} (no-op stack, same load)", base[key + "_ms"]) for key in ("p50", "p99")
            if base.get(key + "_ms") is not None]


def ratio_note(report: dict) -> str:
    """One line: Shortlist/floor ratios and CPU per Recommend; empty when neither is known."""
    parts = []
    r = report.get("ratios")
    if r:
        parts.append("shortlist / floor: " + ", ".join(
            f"{label} {r[key]:.2f}x" for label, key in
            (("p50", "p50"), ("p99", "p99"), ("CPU/request", "cpu_per_request"))
            if r.get(key) is not None))
    cpu = [(name, _total_cpu_ms(block)) for name, block in
           (("shortlist", report), ("floor", report.get("floor") or {}))]
    cpu = [f"{name} {ms:.2f} ms" for name, ms in cpu if ms is not None]
    if cpu:
        parts.append("server CPU per Recommend: " + ", ".join(cpu))
    return "; ".join(parts)


_FLOOR_STYLE = {"p50": ("#2ca02c", "--"), "p99": ("#2ca02c", ":")}


STACK_NOTE = ("each bar: mean split of the answered requests whose end-to-end lies in the band "
              "around that percentile; segments add up to their mean end-to-end; "
              "| = end-to-end percentile")


def plot(report: dict, path: Path) -> Path | None:
    """Draw the report to ``path``: PNG (or any matplotlib format) or self-contained HTML.

    HTML never needs matplotlib (an inline SVG), so it is the format that always works; for
    other formats a missing matplotlib (the optional ``report`` extra) is a warning in the
    report, not a failure of the run. Returns the path written, or None.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".html", ".htm"):
        path.write_text(render_html(report))
        return path
    try:
        import matplotlib
    except ImportError:
        msg = f"plot {path}: matplotlib is not installed (pip install -e '.[report]'); skipped"
        logger.warning(msg)
        report.setdefault("warnings", []).append(msg)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    comp = report.get("composition", {})
    rows = _stage_rows(report)
    leaves = _leaf_order({k for c in comp.values() for k in c["mean_ms"]})
    colours = _colours(leaves)
    fig, (ax1, ax2) = plt.subplots(
        2, 1, figsize=(12, 4.0 + 0.28 * len(rows) + 0.5 * len(comp)),
        gridspec_kw={"height_ratios": [max(1.2, 0.9 * len(comp)), max(1.5, 0.28 * len(rows))]})
    note = ratio_note(report)
    fig.suptitle(_title(report) + (f"\n{note}" if note else ""), fontsize=11,
                 fontweight="bold")

    labels = list(comp)
    refs = floor_refs(report)
    widest = max([c["end_to_end_ms"] for c in comp.values()]
                 + [sum(c["mean_ms"].values()) for c in comp.values()]
                 + [ms for _, ms in refs] + [1e-3])
    for y, label in enumerate(labels):
        c = comp[label]
        left = 0.0
        for leaf in leaves:
            ms = c["mean_ms"].get(leaf, 0.0)
            if ms <= 0:
                continue
            # the unexplained rest of a handler is hatched, so it does not pass for a stage
            ax1.barh(y, ms, left=left, color=colours[leaf], edgecolor="white", linewidth=0.5,
                     hatch="//" if leaf.endswith(".other") else None,
                     label=_label(leaf) if y == 0 else None)
            if ms >= 0.06 * widest:
                ax1.text(left + ms / 2, y, f"{ms:.1f}", ha="center", va="center", fontsize=8)
            left += ms
        ax1.plot([c["end_to_end_ms"]] * 2, [y - 0.42, y + 0.42], color="black", linewidth=2)
        ax1.text(max(left, c["end_to_end_ms"]) + 0.01 * widest, y,
                 f"{c['end_to_end_ms']:.1f} ms", va="center", fontsize=9)
    for label, ms in refs:
        colour, style = _FLOOR_STYLE[label.split()[1]]
        ax1.axvline(ms, color=colour, linestyle=style, linewidth=1.5,
                    label=f"{label}: {ms:.1f} ms")
    ax1.set_yticks(range(len(labels)),
                   [f"{lab} (p{c['band'][0]:g}-p{c['band'][1]:g}, n={c['requests']})"
                    for lab, c in comp.items()])
    ax1.invert_yaxis()
    ax1.set_xlim(0, widest * 1.15)
    ax1.set_xlabel("ms")
    ax1.set_title(STACK_NOTE, fontsize=8.5, wrap=True)
    if comp or refs:
        ax1.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    else:
        ax1.text(0.5, 0.5, "no answered requests", ha="center", transform=ax1.transAxes)

    stages = dict(report.get("stages", {}))
    floor_e2e = (report.get("floor") or {}).get("stages", {}).get("end_to_end")
    if floor_e2e and "end_to_end" in rows:  # the floor's bar right under Shortlist's
        rows.insert(rows.index("end_to_end") + 1, "floor: end_to_end")
        stages["floor: end_to_end"] = floor_e2e
    ys = np.arange(len(rows))
    p50 = [max(stages[r]["p50_ms"], 1e-3) for r in rows]
    p99 = [max(stages[r]["p99_ms"], 1e-3) for r in rows]
    hatch = ["//" if r.startswith("floor") else None for r in rows]
    ax2.barh(ys - 0.2, p50, height=0.4, color="#4c72b0", label="p50", hatch=hatch)
    ax2.barh(ys + 0.2, p99, height=0.4, color="#dd8452", label="p99", hatch=hatch)
    for y, a, b in zip(ys, p50, p99, strict=True):
        ax2.text(b * 1.08, y, f"{a:.2f} / {b:.2f}", va="center", fontsize=7.5)
    ax2.set_yticks(ys, rows, fontsize=8.5)
    ax2.invert_yaxis()
    ax2.set_xscale("log")
    ax2.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    if rows:
        ax2.set_xlim(min(p50) / 2, max(p99) * 4)
    ax2.set_xlabel("ms (log scale); labels: p50 / p99")
    ax2.set_title("each stage's own percentiles (client view, answered requests)", fontsize=9)
    ax2.legend(loc="lower right", fontsize=8)
    ax2.grid(axis="x", which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render_html(report: dict) -> str:
    """The plot as one HTML page with inline SVG: no matplotlib, no scripts, no fetches."""
    esc = html.escape
    comp = report.get("composition", {})
    leaves = _leaf_order({k for c in comp.values() for k in c["mean_ms"]})
    colours = _colours(leaves)
    refs = floor_refs(report)
    widest = max([c["end_to_end_ms"] for c in comp.values()]
                 + [sum(c["mean_ms"].values()) for c in comp.values()]
                 + [ms for _, ms in refs] + [1e-3])
    x0, width, row_h = 230, 620, 34
    scale = width / (widest * 1.15)
    height = 30 + row_h * max(1, len(comp))
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{x0 + width + 90}" '
           f'height="{height}" font-family="sans-serif" font-size="12">']
    for i, (label, c) in enumerate(comp.items()):
        y = 10 + i * row_h
        svg.append(f'<text x="4" y="{y + 17}">{esc(label)} (p{c["band"][0]:g}-'
                   f'p{c["band"][1]:g}, n={c["requests"]})</text>')
        left = 0.0
        for leaf in leaves:
            ms = c["mean_ms"].get(leaf, 0.0)
            if ms <= 0:
                continue
            svg.append(f'<rect x="{x0 + left * scale:.1f}" y="{y}" width="{ms * scale:.1f}" '
                       f'height="24" fill="{colours[leaf]}" stroke="white">'
                       f'<title>{esc(_label(leaf))}: {ms:.2f} ms</title></rect>')
            left += ms
        mark = x0 + c["end_to_end_ms"] * scale
        svg.append(f'<line x1="{mark:.1f}" x2="{mark:.1f}" y1="{y - 3}" y2="{y + 27}" '
                   'stroke="black" stroke-width="2"/>')
        svg.append(f'<text x="{x0 + max(left, c["end_to_end_ms"]) * scale + 6:.1f}" '
                   f'y="{y + 17}">{c["end_to_end_ms"]:.1f} ms</text>')
    if not comp:
        svg.append('<text x="10" y="25">no answered requests</text>')
    for label, ms in refs:
        x, dash = x0 + ms * scale, "6,3" if " p50 " in label else "2,3"
        svg.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="4" y2="{height - 4}" stroke="#2ca02c" '
                   f'stroke-width="1.5" stroke-dasharray="{dash}"><title>{esc(label)}: '
                   f'{ms:.2f} ms</title></line>')
    svg.append("</svg>")
    legend = " ".join(f'<span class="key"><i style="background:{colours[leaf]}"></i>'
                      f"{esc(_label(leaf))}</span>" for leaf in leaves)
    legend += "".join(f'<span class="key">{"- - -" if " p50 " in label else ". . ."} '
                      f"{esc(label)}: {ms:.2f} ms</span>" for label, ms in refs)
    head = "<tr><th>band</th>" + "".join(f"<th>{esc(_label(k))}</th>" for k in leaves)
    head += "<th>sum</th><th>end-to-end pXX</th></tr>"
    body = "".join(
        f"<tr><td>{esc(lab)}</td>"
        + "".join(f"<td>{c['mean_ms'].get(k, 0.0):.2f}</td>" for k in leaves)
        + f"<td>{sum(c['mean_ms'].values()):.2f}</td><td>{c['end_to_end_ms']:.2f}</td></tr>"
        for lab, c in comp.items())
    stages = dict(report.get("stages", {}))
    rows = _stage_rows(report)
    floor_e2e = (report.get("floor") or {}).get("stages", {}).get("end_to_end")
    if floor_e2e and "end_to_end" in rows:
        rows.insert(rows.index("end_to_end") + 1, "floor: end_to_end")
        stages["floor: end_to_end"] = floor_e2e
    top = max([stages[r]["p99_ms"] for r in rows] + [1e-3])
    stage_rows = "".join(
        f"<tr><td>{esc(r)}</td><td>{stages[r]['p50_ms']:.2f}</td>"
        f"<td>{stages[r]['p99_ms']:.2f}</td><td class='bars'>"
        f"<div class='b50' style='width:{100 * stages[r]['p50_ms'] / top:.1f}%'></div>"
        f"<div class='b99' style='width:{100 * stages[r]['p99_ms'] / top:.1f}%'></div></td></tr>"
        for r in rows)
    server = report.get("server_metrics") or {}
    server_rows = "".join(
        f"<tr><td>{esc(n)}</td>" + "".join(
            f"<td>{s[k]:.2f}</td>" if s[k] is not None else "<td>-</td>"
            for k in QUANTILES) + f"<td>{s['count']}</td></tr>"
        for n, s in server.items())
    server_html = (f"<h2>Servers' own view (/metrics, bucket-interpolated, all clients)</h2>"
                   f"<table><tr><th>stage</th><th>p50</th><th>p95</th><th>p99</th>"
                   f"<th>count</th></tr>{server_rows}</table>") if server else ""
    floor = report.get("floor")
    cpu_html = ""
    if report.get("cpu") or floor:
        cpu_html = ("<h2>Server CPU per Recommend and the floor</h2><pre>"
                    + esc("\n".join(cpu_lines(report, floor)
                                    + (["", *floor_lines(report, floor)] if floor else [])))
                    + "</pre>")
    warnings = "".join(f"<li>{esc(w)}</li>" for w in
                       [*report.get("warnings", []), *(floor or {}).get("warnings", [])])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>shortlist-bench</title>
<style>
body{{font-family:sans-serif;margin:1.5em;color:#222}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:2px 8px;text-align:right;font-size:13px}}
td:first-child,th:first-child{{text-align:left}} .key{{margin-right:1em;font-size:13px}}
.key i{{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}}
td.bars{{width:360px;text-align:left}} .b50,.b99{{height:6px;margin:1px 0}}
.b50{{background:#4c72b0}} .b99{{background:#dd8452}} p.note{{font-size:13px;color:#555}}
</style></head><body>
<h1 style="font-size:18px">{esc(_title(report))}</h1>
{f'<p class="note">{esc(ratio_note(report))}</p>' if ratio_note(report) else ""}
<h2>Where the milliseconds go</h2>
<p class="note">{esc(STACK_NOTE)}</p>
{"".join(svg)}
<p>{legend}</p>
<table>{head}{body}</table>
<h2>Each stage's own percentiles (ms; blue p50, orange p99)</h2>
<table><tr><th>stage</th><th>p50</th><th>p99</th><th></th></tr>{stage_rows}</table>
{server_html}
{cpu_html}
{f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else ""}
</body></html>
"""


def _endpoint(value: str) -> tuple[str, str]:
    name, sep, address = value.partition("=")
    if not sep or not name or not address:
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT, got {value!r}")
    return name, address


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shortlist-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--concurrency", type=int, default=2000,
                        help="most requests awaiting an answer; a request due past it is "
                             "counted as CLIENT_SATURATED, not delayed (open loop)")
    parser.add_argument("--timeout", type=float, default=2.0, help="per-request deadline")
    parser.add_argument("--users", type=Path, default=None,
                        help="known user ids, one per line (default: 1..600, MovieLens-style)")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON report")
    parser.add_argument("--metrics", type=_endpoint, action="append", default=[],
                        metavar="NAME=HOST:PORT",
                        help="a server's Prometheus endpoint to read before and after the run "
                             "(repeatable), e.g. gateway=127.0.0.1:9101")
    parser.add_argument("--plot", type=Path, default=None, metavar="PATH",
                        help="draw the latency breakdown: .png (needs matplotlib) or .html")
    parser.add_argument("--warmup", type=int, default=10, metavar="N",
                        help="calls made one by one before the measured window opens "
                             "(connections, first-call paths); a cache warm-up is a run of "
                             "its own")
    parser.add_argument("--floor", action="store_true",
                        help="then run the same load against three no-op servers of "
                             "Shortlist's shape (started here, on free ports) and report "
                             "Shortlist/floor ratios of p50, p99 and CPU per request")
    args = parser.parse_args(argv)
    users = ([u.strip() for u in args.users.read_text().splitlines() if u.strip()]
             if args.users else [str(i) for i in range(1, 601)])
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")
    report = run(args.target, args.rate, args.duration, users, args.timeout,
                 max_in_flight=args.concurrency, metrics=dict(args.metrics),
                 warmup=args.warmup)
    if args.floor:
        attach_floor(report, run_floor(args.rate, args.duration, users, args.timeout,
                                       max_in_flight=args.concurrency, warmup=args.warmup))
    if args.plot:
        plot(report, args.plot)
    print(summary(report))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
