"""shortlist-bench on a tiny stack: the report is complete and consistent (not speed)."""

from __future__ import annotations

import json

import pytest

from gateway import bench
from shortlist.common.stack import Stack

pytestmark = pytest.mark.e2e


def test_report_shape_and_consistency(trained, tmp_path):
    with Stack.on_free_ports(trained, log_dir=tmp_path / "logs",
                             state_dir=tmp_path / "state") as stack:
        out = tmp_path / "bench.json"
        code = bench.main(["--target", stack.address("gateway"), "--rate", "25",
                           "--duration", "1", "--output", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert {"qps", "requests", "errors", "stages"} <= set(report)
    assert report["requests"] == 25
    assert report["ok"] + sum(report["errors"].values()) == report["requests"]
    stages = report["stages"]
    for name in ("end_to_end", "gateway", "retrieval", "ranking", "network",
                 "ranking.features", "ranking.model", "ranking.mmr", "retrieval.merge"):
        s = stages[name]
        assert 0 <= s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert stages["end_to_end"]["count"] == report["ok"]
    # the servers' total is inside what the client observed
    assert stages["total"]["p50_ms"] <= stages["end_to_end"]["p50_ms"]
