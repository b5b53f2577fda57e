"""The Grafana dashboard (deploy/grafana/dashboards/shortlist.json) queries only what the servers
export: every metric name and label in its queries is read off real servers' /metrics after a
few requests, so a renamed metric or label fails here instead of leaving a panel blank."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shortlist.common import drift
from shortlist.common.stack import free_ports
from shortlist.gateway.server import create_server as create_gateway
from shortlist.gateway.settings import GatewaySettings
from shortlist.ranking.server import create_server as create_ranking
from shortlist.ranking.settings import RankingSettings
from shortlist.retrieval.server import create_server as create_retrieval
from shortlist.retrieval.settings import RetrievalSettings
from shortlist.v1 import gateway_pb2, gateway_pb2_grpc

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy/grafana/dashboards/shortlist.json"
METRIC = re.compile(r"\b(shortlist_[a-z0-9_]+)\b")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"\b(shortlist_[a-z0-9_]+)\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"]
              if v["type"] == "query"]
    assert len(exprs) >= 10
    return exprs


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> dict[str, set[str]]:
    """Sample name -> label names, from the three servers' /metrics after some traffic."""
    ports = dict(zip(("retrieval", "ranking", "gateway"), free_ports(3), strict=True))
    retrieval, rport = create_retrieval(RetrievalSettings(
        address="127.0.0.1:0", artifacts=trained, metrics_port=ports["retrieval"],
        event_log=tmp_path_factory.mktemp("dashboard") / "events.db"))
    ranking, kport = create_ranking(RankingSettings(
        address="127.0.0.1:0", artifacts=trained, metrics_port=ports["ranking"]))
    gateway, gport = create_gateway(GatewaySettings(
        address="127.0.0.1:0", retrieval_target=f"127.0.0.1:{rport}",
        ranking_target=f"127.0.0.1:{kport}", metrics_port=ports["gateway"]))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{gport}") as channel:
            stub = gateway_pb2_grpc.GatewayStub(channel)
            for user in ("u1", "someone-new"):
                stub.Recommend(gateway_pb2.RecommendRequest(user_id=user, k=5), timeout=10)
            with pytest.raises(grpc.RpcError):  # an error code on the request counter
                stub.Recommend(gateway_pb2.RecommendRequest(user_id="", k=5), timeout=10)
        names: dict[str, set[str]] = {}
        for port in ports.values():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    names.setdefault(sample.name, set()).update(sample.labels)
        return names
    finally:
        gateway.stop(0)
        ranking.stop(0)
        retrieval.stop(0)


def test_every_metric_the_dashboard_queries_is_exported(exported):
    queried = {name for expr in queries() for name in METRIC.findall(expr)}
    assert {"shortlist_stage_seconds_bucket", "shortlist_requests_total",
            "shortlist_variant_requests_total", "shortlist_drift_psi"} <= queried
    missing = queried - set(exported)
    assert not missing, f"the dashboard queries metrics no server exports: {sorted(missing)}"


def test_every_label_the_dashboard_uses_is_on_its_metrics(exported):
    for expr in queries():
        labels = set().union(*(exported[m] for m in METRIC.findall(expr)))
        used = {name.strip() for group in GROUPING.findall(expr) for name in group.split(",")
                if name.strip()}
        used |= {label for _, matchers in SELECTOR.findall(expr)
                 for label in MATCHER.findall(matchers)}
        assert used <= labels, f"{expr}: no such label {sorted(used - labels)}"


def test_the_drift_panel_draws_the_documented_thresholds():
    dashboard = json.loads(DASHBOARD.read_text())
    [panel] = [p for p in dashboard["panels"]
               if any("shortlist_drift_psi" in t["expr"] for t in p.get("targets", []))]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, drift.WATCH, drift.RETRAIN]
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"


def test_the_checks_catch_a_wrong_name_and_label():
    assert METRIC.findall('sum by (server) (rate(shortlist_stage_second_bucket[5m]))') == [
        "shortlist_stage_second_bucket"]
    expr = 'sum by (arm) (rate(shortlist_variant_requests_total{degraded="true"}[5m]))'
    assert GROUPING.findall(expr) == ["arm"]
    assert [MATCHER.findall(m) for _, m in SELECTOR.findall(expr)] == [["degraded"]]
