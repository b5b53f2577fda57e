"""Overload: past the concurrency limit, calls are refused at once, not queued forever."""

from __future__ import annotations

import pytest

from shortlist.clients import bench
from shortlist.common.stack import Stack

pytestmark = pytest.mark.e2e


def test_excess_load_gets_resource_exhausted_quickly(trained, tmp_path):
    # A stack of its own, not the session's shared one: the gateway runs with a concurrency
    # limit of 2, and is pushed past it.
    env = {"SHORTLIST_GATEWAY_MAX_CONCURRENT_RPCS": "2", "SHORTLIST_GATEWAY_MAX_WORKERS": "2"}
    with Stack.on_free_ports(trained, log_dir=tmp_path / "logs", state_dir=tmp_path / "state",
                             env=env) as stack:
        users = [f"u{i}" for i in range(150)]
        report = bench.run(stack.address("gateway"), rate=300, duration_s=2.0, users=users,
                           timeout_s=2.0)
    print("\n" + bench.summary(report))
    assert report["ok"] > 0
    assert set(report["errors"]) <= {"RESOURCE_EXHAUSTED"}, report["errors"]
    assert report["errors"].get("RESOURCE_EXHAUSTED", 0) > 0
    rejected = report["stages"]["failed.RESOURCE_EXHAUSTED"]
    # refused at once: far inside the 2 s deadline (loose bound; numbers go to the docs).
    # Latencies run from each request's due time, so a sender that fell behind adds its own
    # lag to every one of them: that part is the client's, not the gateway's.
    assert report["latency_from"] == "due"
    assert rejected["p95_ms"] < 500 + report["send_lag_ms"]["max_ms"]
