"""Prometheus metrics for one server process: requests by RPC and status, stage latencies.

Each server owns one ``Metrics`` (its own registry, not the library's global one, so tests can
run several servers in one process) and serves it on ``metrics_port`` when that is set. The
stage histograms hold what the servers also return in ``timings_ms``: a scraper sees every
request's stages, the benchmark harness sees its own requests' stages. Retrieval and ranking
also export drift (``watch_drift``): each signal's PSI over the server's window, computed when
scraped, so requests never pay for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shortlist.common.drift import Monitor

logger = logging.getLogger(__name__)

# Fine at the low end, where the per-stage targets live (a p50 of a few milliseconds), and
# reaching the deadlines (seconds) at the top. In seconds, as Prometheus convention wants.
STAGE_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004,
                   0.005, 0.006, 0.008, 0.010, 0.0125, 0.015, 0.020, 0.025, 0.030, 0.040,
                   0.050, 0.075, 0.100, 0.150, 0.250, 0.500, 1.0, 2.5, 5.0)


DRIFT_PSI = "shortlist_drift_psi"
DRIFT_OBSERVATIONS = "shortlist_drift_window_observations"


class DriftCollector(Collector):
    """The serving version's drift readings, asked for at each scrape; nothing while no
    version is served or the version has no reference (fitted before references existed)."""

    def __init__(self, server: str, monitor: Callable[[], Monitor | None]) -> None:
        self.server = server
        self.monitor = monitor

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (GaugeMetricFamily(DRIFT_PSI, "Population stability index of each signal over "
                                  "the server's window against the served version's "
                                  "reference (docs/operations.md).",
                                  labels=["server", "signal"]),
                GaugeMetricFamily(DRIFT_OBSERVATIONS, "Observations of each drift signal in "
                                  "the server's window.", labels=["server", "signal"]))

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        psi, observations = self._families()
        monitor = self.monitor()
        for reading in monitor.readings() if monitor is not None else ():
            labels = [self.server, reading.signal]
            observations.add_metric(labels, reading.observations)
            if reading.psi is not None:
                psi.add_metric(labels, reading.psi)
        return psi, observations


class Metrics:
    def __init__(self, server: str) -> None:
        self.server = server
        self.registry = CollectorRegistry()
        # The process's CPU seconds, memory and open files (``process_*``), which the library
        # registers only on its global registry: `shortlist-bench` divides the CPU seconds
        # by the requests served in its window (CPU per request).
        ProcessCollector(registry=self.registry)
        self._requests = Counter(
            "shortlist_requests", "Requests answered, by RPC and gRPC status code.",
            ["server", "rpc", "code"], registry=self.registry)
        self._latency = Histogram(
            "shortlist_request_seconds", "Time inside the server per request, by RPC.",
            ["server", "rpc"], buckets=STAGE_BUCKETS_S, registry=self.registry)
        self._stages = Histogram(
            "shortlist_stage_seconds",
            "Time per request in each stage (the keys of the response's timings_ms).",
            ["server", "stage"], buckets=STAGE_BUCKETS_S, registry=self.registry)
        self._http: WSGIServer | None = None

    def request(self, rpc: str, code: str, ms: float) -> None:
        self._requests.labels(self.server, rpc, code).inc()
        self._latency.labels(self.server, rpc).observe(ms / 1e3)

    def stages(self, timings_ms: Mapping[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self._stages.labels(self.server, stage).observe(ms / 1e3)

    def watch_drift(self, monitor: Callable[[], Monitor | None]) -> None:
        """Export the drift of whatever ``monitor`` returns at scrape time (the serving
        version's ``Monitor``, or None)."""
        self.registry.register(DriftCollector(self.server, monitor))

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics over HTTP on a daemon thread; returns the bound port (0 picks one)."""
        self._http, _thread = start_http_server(port, addr=host, registry=self.registry)
        bound = int(self._http.server_port)
        logger.info("metrics endpoint", extra={"fields": {"server": self.server,
                                                           "address": f"{host}:{bound}"}})
        return bound

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
