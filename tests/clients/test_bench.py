"""shortlist-bench: the report is complete and consistent (not speed), on a tiny stack and in
its parts (network remainders, histogram quantiles, scrape windows, plots, stack plumbing).

Client latencies run from each request's due time (``shortlist.clients.load``), which the report
says; tests/clients/test_load.py checks that semantic on the driver itself."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import pytest

from shortlist.clients import bench
from shortlist.common import artifacts
from shortlist.common.metrics import Metrics
from shortlist.common.stack import Stack, free_port

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


@pytest.mark.e2e
def test_report_shape_and_consistency(stack, trained, tmp_path):
    """On the session's shared stack (the bench only reads; server metrics are scraped
    before and after the run, so earlier tests' requests fall outside the window)."""
    out, png = tmp_path / "bench.json", tmp_path / "plot" / "bench.png"
    code = bench.main(["--target", stack.address("gateway"), "--rate", "25",
                       "--duration", "1", "--output", str(out), "--plot", str(png)]
                      + [a for name in ("gateway", "retrieval", "ranking")
                         for a in ("--metrics", f"{name}={stack.metrics_address(name)}")])
    memory = stack.memory()
    # one request in flight at most, one due every 0.5 ms (far shorter than any Recommend
    # through three servers, so saturation does not depend on how fast this machine is: at
    # one every 5 ms a quiet box answered each before the next fell due): the excess is
    # refused by the client at once (never delayed), and every due request is accounted for
    narrow_out = tmp_path / "narrow.json"
    narrow_code = bench.main(["--target", stack.address("gateway"), "--rate", "2000",
                              "--duration", "0.05", "--concurrency", "1",
                              "--output", str(narrow_out)])
    narrow = json.loads(narrow_out.read_text())
    assert narrow_code == 0 and narrow["concurrency"] == 1 and narrow["requests"] == 100
    assert narrow["errors"].get("CLIENT_SATURATED", 0) > 0
    assert narrow["ok"] + sum(narrow["errors"].values()) == 100
    assert narrow["latency_from"] == "due"
    assert code == 0
    assert set(memory) == {"gateway", "retrieval", "ranking"}
    for m in memory.values():
        assert 0 < m["rss_bytes"] <= m["peak_rss_bytes"]
    report = json.loads(out.read_text())
    assert {"qps", "requests", "errors", "stages"} <= set(report)
    assert report["requests"] == 25
    assert report["ok"] + sum(report["errors"].values()) == report["requests"]
    stages = report["stages"]
    for name in ("end_to_end", "gateway", "retrieval", "ranking", "network",
                 "network.client_gateway", "network.gateway_retrieval",
                 "network.gateway_ranking", "retrieval.total", "ranking.total",
                 "ranking.features", "ranking.model", "ranking.mmr", "retrieval.merge"):
        s = stages[name]
        assert 0 <= s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"] <= s["max_ms"], name
        assert set(s) >= {"p50_ms", "p95_ms", "p99_ms", "max_ms"}
    assert stages["end_to_end"]["count"] == report["ok"]
    # the servers' total is inside what the client observed
    assert stages["total"]["p50_ms"] <= stages["end_to_end"]["p50_ms"]
    # latencies run from the due time; how late the sender was is reported beside them
    assert report["latency_from"] == "due"
    lag = report["send_lag_ms"]
    assert 0 <= lag["p50_ms"] <= lag["p99_ms"] <= lag["max_ms"]
    # retrieval's stages are its generators (named by the artifact, not by the bench) + merge
    version = artifacts.read_manifest(artifacts.resolve(trained))
    generators = set(version.parameters["generators"])
    retrieval_stages = {s.split(".", 1)[1] for s in stages
                        if s.startswith("retrieval.") and s not in ("retrieval.total",
                                                                    "retrieval.merge")}
    assert retrieval_stages and retrieval_stages <= generators

    # the only tolerated warning: no matplotlib here (it is in the optional `report` extra)
    expected = [] if HAS_MATPLOTLIB else [w for w in report["warnings"] if w.startswith("plot ")]
    assert report["warnings"] == expected
    ok, degraded = report["ok"], report["degraded"]
    server = report["server_metrics"]
    assert server["gateway.total"]["count"] >= ok
    assert server["retrieval.total"]["count"] >= ok
    # a degraded answer may have had no ranking call finish
    assert server["ranking.model"]["count"] >= ok - degraded
    for name, s in server.items():
        assert 0 <= s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"], name
    assert report["server_requests"]["gateway"]["OK"] >= ok
    assert report["server_requests"]["retrieval"]["OK"] >= ok

    comp = report["composition"]
    assert set(comp) == {"p50", "p95", "p99"}
    for c in comp.values():
        # the leaf split adds up to those requests' end-to-end (clamping aside)
        assert sum(c["mean_ms"].values()) == pytest.approx(c["mean_end_to_end_ms"], rel=0.02)

    if HAS_MATPLOTLIB:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = bench.plot(report, tmp_path / "bench.html")
    assert page is not None and "<svg" in page.read_text()
    assert "ranking: model" in page.read_text()


def test_histogram_quantile_known_answers():
    buckets = [(1.0, 10.0), (2.0, 20.0), (math.inf, 20.0)]
    assert bench.histogram_quantile(0.50, buckets) == pytest.approx(1.0)
    assert bench.histogram_quantile(0.75, buckets) == pytest.approx(1.5)
    assert bench.histogram_quantile(0.25, buckets) == pytest.approx(0.5)  # from 0 to 1
    # a rank in the +Inf bucket: the highest finite bound is all that is known
    assert bench.histogram_quantile(0.99, [(1.0, 5.0), (math.inf, 10.0)]) == 1.0
    # order of the pairs does not matter; an empty histogram has no quantile
    assert bench.histogram_quantile(0.75, buckets[::-1]) == pytest.approx(1.5)
    assert bench.histogram_quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]) is None
    assert bench.histogram_quantile(0.5, []) is None


def test_network_is_the_remainder_at_each_hop():
    timings = {"total": 10.0, "gateway": 1.0, "retrieval": 5.0, "ranking": 4.0,
               "retrieval.total": 4.5, "retrieval.als": 2.0, "retrieval.merge": 1.0,
               "ranking.total": 3.0, "ranking.features": 1.0, "ranking.model": 1.5,
               "ranking.mmr": 0.25}
    parts = bench.network_parts(12.0, timings)
    assert parts == pytest.approx({"network.client_gateway": 2.0,
                                   "network.gateway_retrieval": 0.5,
                                   "network.gateway_ranking": 1.0, "network": 3.5})
    leaves = bench.leaf_breakdown(12.0, timings)
    assert leaves == pytest.approx({"network": 3.5, "gateway": 1.0, "retrieval.als": 2.0,
                                    "retrieval.merge": 1.0, "retrieval.other": 1.5,
                                    "ranking.features": 1.0, "ranking.model": 1.5,
                                    "ranking.mmr": 0.25, "ranking.other": 0.25})
    assert sum(leaves.values()) == pytest.approx(12.0)
    # degraded: no ranking.total, so no ranking hop; the failed call is all "ranking other"
    late = {k: v for k, v in timings.items() if not k.startswith("ranking.")}
    assert "network.gateway_ranking" not in bench.network_parts(12.0, late)
    leaves = bench.leaf_breakdown(12.0, late)
    assert leaves["ranking.other"] == 4.0
    assert sum(leaves.values()) == pytest.approx(12.0)
    # a clock mismatch never makes a negative remainder
    assert bench.network_parts(9.0, timings)["network.client_gateway"] == 0.0


def test_stage_order_puts_generators_before_merge():
    names = ["merge", "trending", "total", "als", "zeta", "model", "features", "mmr"]
    assert bench._ordered(names) == ["total", "als", "trending", "zeta", "merge", "features",
                                     "model", "mmr"]


def test_exposition_parser_reads_labels_values_and_escapes():
    text = "\n".join([
        "# HELP shortlist_requests_total calls",
        "# TYPE shortlist_requests_total counter",
        'shortlist_requests_total{code="OK",rpc="Rank"} 4.0',
        'shortlist_stage_seconds_bucket{le="+Inf",stage="model"} 7 1700000000000',
        'odd{a="say \\"hi\\" {x}",b="back\\\\slash"} 1e3',
        "no_labels 2", "not a sample line",
    ])
    assert list(bench.samples(text)) == [
        ("shortlist_requests_total", {"code": "OK", "rpc": "Rank"}, 4.0),
        ("shortlist_stage_seconds_bucket", {"le": "+Inf", "stage": "model"}, 7.0),
        ("odd", {"a": 'say "hi" {x}', "b": "back\\slash"}, 1000.0),
        ("no_labels", {}, 2.0),
    ]


def test_server_metrics_cover_only_the_window():
    m = Metrics("unit")
    port = m.serve("127.0.0.1", 0)
    try:
        m.stages({"model": 50.0})  # before the window: must not count
        m.request("Rank", "OK", 1.0)
        warnings: list[str] = []
        before = bench.try_scrape("unit", f"127.0.0.1:{port}", warnings)
        for ms in (0.6, 0.7, 0.8, 0.9):
            m.stages({"model": ms})
            m.request("Rank", "OK", 1.0)
        m.request("Rank", "INVALID_ARGUMENT", 0.1)
        after = bench.try_scrape("unit", f"127.0.0.1:{port}", warnings)
    finally:
        m.close()
    stages, codes = bench.server_report("unit", before, after, warnings)
    assert warnings == []
    assert stages["unit.model"]["count"] == 4
    # all four in the (0.5, 0.75] ms and (0.75, 1] ms buckets: the 50 ms one is outside
    assert 0.5 <= stages["unit.model"]["p50_ms"] <= 0.75
    assert stages["unit.model"]["p99_ms"] <= 1.0
    assert codes == {"INVALID_ARGUMENT": 1, "OK": 4}


def test_failed_scrape_is_a_warning_not_a_crash():
    warnings: list[str] = []
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    assert bench.try_scrape("gateway", address, warnings, timeout_s=1.0) is None
    assert len(warnings) == 1 and "gateway" in warnings[0]
    assert bench.server_report("gateway", None, None, warnings) == ({}, {})


def fake_report() -> dict:
    res = bench.Results(started=0.0, finished=2.0, sent=40)
    for i in range(40):
        t = {"total": 5.0 + i / 10, "gateway": 0.5, "retrieval": 2.5 + i / 10, "ranking": 2.0,
             "retrieval.total": 2.0 + i / 10, "retrieval.als": 1.0 + i / 10,
             "retrieval.trending": 0.2, "ranking.total": 1.8, "ranking.features": 0.8,
             "ranking.model": 0.6, "ranking.mmr": 0.2}
        res.add(6.0 + i / 10, "OK", t, False)
    res.add(2000.0, "DEADLINE_EXCEEDED", None, False)
    report = res.report()
    report["server_metrics"] = {"gateway.total": {"p50_ms": 5.5, "p95_ms": 8.0,
                                                  "p99_ms": None, "count": 40}}
    report["server_requests"] = {"gateway": {"OK": 40}}
    report["warnings"] = ["metrics ranking (x:1): scrape failed: <refused>"]
    return report


def test_composition_adds_up_per_band():
    report = fake_report()
    comp = report["composition"]
    for c in comp.values():
        assert c["requests"] >= 1
        assert sum(c["mean_ms"].values()) == pytest.approx(c["mean_end_to_end_ms"])
    assert comp["p50"]["end_to_end_ms"] < comp["p99"]["end_to_end_ms"]
    assert list(comp["p50"]["mean_ms"])[:2] == ["network", "gateway"]
    text = bench.summary(report)
    assert "gateway.total" in text and "requests seen by gateway: OK 40" in text
    assert "due time" not in text  # made by hand: no driver, so no claim about its latencies
    report.update(latency_from="due", rate=20.0,
                  send_lag_ms={"p50_ms": 0.1, "p99_ms": 0.5, "max_ms": 3.25})
    text = bench.summary(report)
    assert "from each request's due time (open loop at 20/s)" in text
    assert "sender lag p99 0.50 ms, max 3.25 ms" in text
    assert "warning: metrics ranking" in text


def test_html_plot_needs_no_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    report = fake_report()
    page = bench.plot(report, tmp_path / "out" / "bench.html")
    text = page.read_text()
    assert text.startswith("<!doctype html>") and "<svg" in text
    assert "retrieval: als" in text and "&lt;refused&gt;" in text  # escaped
    assert "<script" not in text and "http://" not in text.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    # PNG without matplotlib: skipped with a warning in the report, the run goes on
    assert bench.plot(report, tmp_path / "bench.png") is None
    assert not (tmp_path / "bench.png").exists()
    assert "matplotlib" in report["warnings"][-1]


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib (the report extra) not installed")
def test_png_plot(tmp_path):
    path = bench.plot(fake_report(), tmp_path / "bench.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_flag_parsing():
    assert bench._endpoint("gateway=127.0.0.1:9101") == ("gateway", "127.0.0.1:9101")
    with pytest.raises(SystemExit):
        bench.main(["--metrics", "127.0.0.1:9101"])


def test_stack_metrics_ports_and_placeholders(monkeypatch):
    monkeypatch.delenv("SHORTLIST_GATEWAY_METRICS_PORT", raising=False)
    stack = Stack.on_free_ports(Path("artifacts"), metrics=True)
    assert set(stack.metrics_ports) == {"gateway", "retrieval", "ranking"}
    for name, port in stack.metrics_ports.items():
        assert stack.environment(name)[f"SHORTLIST_{name.upper()}_METRICS_PORT"] == str(port)
        assert stack.metrics_address(name) == f"127.0.0.1:{port}"
    cmd = stack.substitute(["--target", "{gateway}", "--metrics", "ranking={ranking_metrics}"])
    assert cmd == ["--target", stack.address("gateway"),
                   "--metrics", f"ranking={stack.metrics_address('ranking')}"]
    plain = Stack.on_free_ports(Path("artifacts"))
    assert plain.metrics_ports == {}
    assert "SHORTLIST_GATEWAY_METRICS_PORT" not in plain.environment("gateway")
    with pytest.raises(KeyError):
        plain.metrics_address("gateway")
    assert plain.substitute(["{gateway}", "{gateway_metrics}"]) == [
        plain.address("gateway"), "{gateway_metrics}"]


# ---- CPU per request and the floor ---------------------------------------------------------

def exposition(cpu_s: float, recommends_ok: float, recommends_failed: float = 0.0) -> str:
    """A /metrics page as the servers write it, with the counters the CPU figures need."""
    return "\n".join([
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.",
        "# TYPE process_cpu_seconds_total counter",
        f"process_cpu_seconds_total {cpu_s}",
        "process_resident_memory_bytes 1.2e+08",
        f'shortlist_requests_total{{code="OK",rpc="Recommend",server="gateway"}} {recommends_ok}',
        f'shortlist_requests_total{{code="INVALID_ARGUMENT",rpc="Recommend",server="gateway"}} '
        f"{recommends_failed}",
        'shortlist_requests_total{code="OK",rpc="SimilarItems",server="gateway"} 7',
    ])


def test_cpu_per_request_from_known_counters():
    before = {"gateway": bench.parse(exposition(10.0, 100, 2)),
              "retrieval": bench.parse(exposition(20.0, 0)),
              "ranking": bench.parse(exposition(5.0, 0))}
    after = {"gateway": bench.parse(exposition(10.5, 398, 4)),
             "retrieval": bench.parse(exposition(21.2, 0)),
             "ranking": bench.parse(exposition(5.3, 0))}
    assert before["gateway"].cpu_s == 10.0
    # Recommend of any status, in the window; other RPCs do not count
    requests = bench.recommends_counted(before, after)
    assert requests == 300
    warnings: list[str] = []
    cpu = bench.cpu_report({n: s.cpu_s for n, s in before.items()},
                           {n: s.cpu_s for n, s in after.items()}, requests, "counted",
                           window_s=10.0, source="test", warnings=warnings, client_cpu_s=0.6)
    assert warnings == []
    servers = cpu["servers"]
    assert list(servers) == ["gateway", "retrieval", "ranking"]
    assert servers["gateway"]["ms_per_request"] == pytest.approx(500 / 300)
    assert servers["retrieval"]["ms_per_request"] == pytest.approx(1200 / 300)
    assert servers["ranking"]["ms_per_request"] == pytest.approx(300 / 300)
    assert servers["retrieval"]["cores"] == pytest.approx(0.12)
    assert cpu["total"]["cpu_s"] == pytest.approx(2.0)
    assert cpu["total"]["ms_per_request"] == pytest.approx(2000 / 300)
    assert cpu["client"]["ms_per_request"] == pytest.approx(2.0)  # beside the total, not in it
    assert (cpu["requests"], cpu["requests_from"], cpu["source"]) == (300, "counted", "test")

    # a server without the counter (or restarted: it went down) has no figure, and no total
    # is made of the others
    after["ranking"] = bench.parse(exposition(1.0, 0))
    cpu = bench.cpu_report({n: s.cpu_s for n, s in before.items()},
                           {n: s.cpu_s for n, s in after.items()}, requests, "counted", 10.0,
                           "test", warnings)
    assert cpu["servers"]["ranking"]["ms_per_request"] is None and cpu["total"] is None
    assert len(warnings) == 1 and "ranking" in warnings[0]
    assert bench.scrape_difference(before["ranking"], after["ranking"]) is None
    # no gateway among the endpoints: the Recommend count is unknown, not 0
    assert bench.recommends_counted({"r": bench.parse("process_cpu_seconds_total 1")},
                                    {"r": bench.parse("process_cpu_seconds_total 2")}) is None


def test_proc_stat_cpu_is_utime_plus_stime():
    # the command name may hold spaces and parentheses; fields 14 and 15 are utime and stime
    stat = "4242 (odd) name) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 130 0 0 20 0 9 0 77"
    assert bench.parse_proc_stat(stat, tick_s=0.01) == pytest.approx(3.8)
    own = bench.proc_cpu_seconds(os.getpid())
    if Path("/proc/self/stat").exists():
        assert own is not None and own >= 0
    assert bench.proc_cpu_seconds(2**22 + 12345, proc_root=Path("/nonexistent")) is None


def fake_floor() -> dict:
    res = bench.Results(started=0.0, finished=2.0, sent=40)
    for i in range(40):
        res.add(2.0 + i / 20, "OK", None, False)
    floor = res.report()
    del floor["composition"]
    floor["cpu"] = {"source": "/proc/<pid>/stat", "requests": 40, "requests_from": "sent",
                    "window_s": 2.0, "resolution_s": 0.01,
                    "servers": {n: {"cpu_s": 0.04, "ms_per_request": 1.0, "cores": 0.02}
                                for n in ("gateway", "retrieval", "ranking")},
                    "total": {"cpu_s": 0.12, "ms_per_request": 3.0, "cores": 0.06},
                    "client": {"cpu_s": 0.1, "ms_per_request": 2.5, "cores": 0.05}}
    floor["payload_bytes"] = {"retrieve_response": 9706, "rank_response": 994}
    return floor


def test_ratios_and_their_summary(tmp_path):
    report = fake_report()
    report["cpu"] = {**fake_floor()["cpu"], "source": "/metrics",
                     "total": {"cpu_s": 0.36, "ms_per_request": 9.0, "cores": 0.18}}
    bench.attach_floor(report, fake_floor())
    e2e, base = report["stages"]["end_to_end"], report["floor"]["stages"]["end_to_end"]
    assert report["ratios"] == pytest.approx({
        "p50": e2e["p50_ms"] / base["p50_ms"], "p99": e2e["p99_ms"] / base["p99_ms"],
        "cpu_per_request": 3.0})
    text = bench.summary(report)
    assert "CPU per Recommend (ms)" in text and "shortlist / floor: p50" in text
    assert "CPU per request 3.00x" in text and "9706 B" in text
    # the floor on both plots: reference lines and a bar of its own
    page = bench.plot(report, tmp_path / "floor.html").read_text()
    assert "floor p50" in page and "floor: end_to_end" in page and "9706 B" in page
    if HAS_MATPLOTLIB:
        png = bench.plot(report, tmp_path / "floor.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # without Shortlist's CPU (no --metrics) the CPU ratio is unknown, and says why
    plain = bench.attach_floor(fake_report(), fake_floor())
    assert plain["ratios"]["cpu_per_request"] is None
    assert plain["ratios"]["p50"] == pytest.approx(report["ratios"]["p50"])
    assert any("no --metrics" in w for w in plain["warnings"])
    # a floor that measured no CPU: no ratio rather than a division by zero
    idle = fake_floor()
    idle["cpu"]["total"]["ms_per_request"] = 0.0
    assert bench.ratios(report, idle)["cpu_per_request"] is None


@pytest.mark.e2e
def test_floor_run_beside_the_stack(stack, tmp_path):
    """``--floor`` on the session's stack: the report carries the floor's run, measured the
    same way, and the ratios are exactly Shortlist's figures over the floor's."""
    out = tmp_path / "bench.json"
    code = bench.main(["--target", stack.address("gateway"), "--rate", "20", "--duration", "2",
                       "--warmup", "3", "--floor", "--output", str(out),
                       "--plot", str(tmp_path / "bench.html")]
                      + [a for name in ("gateway", "retrieval", "ranking")
                         for a in ("--metrics", f"{name}={stack.metrics_address(name)}")])
    assert code == 0
    report = json.loads(out.read_text())
    servers = {"gateway", "retrieval", "ranking"}
    assert report["warmup"] == 3 and report["requests"] == 40
    # Shortlist's CPU: every server's counter, divided by the Recommend the gateway counted
    cpu = report["cpu"]
    assert set(cpu["servers"]) == servers
    assert cpu["requests"] >= report["ok"] > 0
    for row in [*cpu["servers"].values(), cpu["total"], cpu["client"]]:
        assert row["cpu_s"] >= 0 and row["ms_per_request"] >= 0
    assert cpu["total"]["cpu_s"] == pytest.approx(
        sum(r["cpu_s"] for r in cpu["servers"].values()))
    # the floor: the same load, measured the same way
    floor = report["floor"]
    assert {"qps", "requests", "ok", "errors", "stages", "cpu", "payload_bytes",
            "send_lag_ms"} <= set(floor)
    assert floor["requests"] == 40 and floor["ok"] == 40 and floor["errors"] == {}
    assert (floor["rate"], floor["concurrency"], floor["warmup"], floor["latency_from"]) == (
        report["rate"], report["concurrency"], report["warmup"], "due")
    assert set(floor["cpu"]["servers"]) == servers and floor["cpu"]["requests"] == 40
    assert floor["warnings"] == []
    assert set(floor["payload_bytes"]) == {"retrieve_response", "rank_response"}
    # ratios are Shortlist / floor, whatever the magnitudes
    ratios = report["ratios"]
    for key in ("p50", "p99"):
        assert ratios[key] == pytest.approx(report["stages"]["end_to_end"][f"{key}_ms"]
                                            / floor["stages"]["end_to_end"][f"{key}_ms"])
    floor_cpu = floor["cpu"]["total"]["ms_per_request"]
    if floor_cpu:
        assert ratios["cpu_per_request"] == pytest.approx(
            cpu["total"]["ms_per_request"] / floor_cpu)
    else:  # 40 requests may stay under one clock tick: unknown, never infinite
        assert ratios["cpu_per_request"] is None
    assert "shortlist / floor" in (tmp_path / "bench.html").read_text()
