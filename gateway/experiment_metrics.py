"""The gateway's experiment metrics, on its Prometheus registry: requests and latency by
variant, shadow comparisons, and what the impressions log dropped."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from shortlist.common.metrics import STAGE_BUCKETS_S

_SHARE_BUCKETS = tuple(i / 10 for i in range(11))
_TAU_BUCKETS = tuple(i / 10 for i in range(-10, 11))


class ExperimentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(
            "shortlist_variant_requests", "Recommend responses served, by experiment variant "
            "and whether ranking was skipped (degraded).",
            ["variant", "degraded"], registry=registry)
        self._latency = Histogram(
            "shortlist_variant_request_seconds", "Recommend time in the gateway by variant.",
            ["variant"], buckets=STAGE_BUCKETS_S, registry=registry)
        self._shadow = Counter(
            "shortlist_shadow_requests", "Shadow work by shadow variant and outcome: scored, "
            "dropped (queue full: the shadow fell behind) or failed.",
            ["variant", "outcome"], registry=registry)
        self._overlap = Histogram(
            "shortlist_shadow_overlap", "Share of the served top 10 also in the shadow's.",
            ["variant"], buckets=_SHARE_BUCKETS, registry=registry)
        self._tau = Histogram(
            "shortlist_shadow_rank_correlation", "Kendall's tau between the served and the "
            "shadow's top 10.", ["variant"], buckets=_TAU_BUCKETS, registry=registry)
        self._impressions = Counter(
            "shortlist_impressions", "Served lists offered to the impressions log, by outcome: "
            "queued, or dropped (the writer fell behind).", ["outcome"], registry=registry)

    def served(self, variant: str, degraded: bool, ms: float) -> None:
        self._requests.labels(variant, "true" if degraded else "false").inc()
        self._latency.labels(variant).observe(ms / 1e3)

    def shadow(self, variant: str, outcome: str) -> None:
        self._shadow.labels(variant, outcome).inc()

    def shadow_scored(self, variant: str, overlap: float, correlation: float) -> None:
        self._overlap.labels(variant).observe(overlap)
        if correlation == correlation:  # NaN: too few items to correlate
            self._tau.labels(variant).observe(correlation)

    def impression(self, queued: bool) -> None:
        self._impressions.labels("queued" if queued else "dropped").inc()
