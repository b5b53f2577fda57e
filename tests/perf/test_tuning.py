"""perf.tuning: every benchmark runs on tiny settings and returns well-formed results.

Which alternative is faster is what the benchmarks are for, and depends on the machine and its
load, so no test asserts it; they check shape, sanity (positive timings, p99 >= p50), that
every alternative was measured, and that the gRPC runs answered every call at a low rate.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shortlist.perf import tuning

# The benchmarks default to the gateway's ranking deadline (0.3 s); the tests check that
# every call is answered, not how fast, on a machine that may be busy with other work.
LENIENT_DEADLINE_S = 2.0


@pytest.fixture(scope="module")
def workload(tmp_path_factory) -> tuning.Workload:
    root = tmp_path_factory.mktemp("tuning")
    version = tuning.fit_small_artifact(root, n_users=200, n_items=300, n_interactions=4000,
                                        dim=16, rounds=20, eval_users=20)
    return tuning.load_workload(version, n_requests=3, n_candidates=100)


def check_timed(s: dict) -> None:
    assert s["n"] > 0
    assert s["p50_ms"] > 0 and s["mean_ms"] > 0
    assert s["p99_ms"] >= s["p50_ms"]


def check_result(res: dict, choice: str, alternatives: set[str]) -> None:
    assert res["choice"] == choice
    assert res["current"] in alternatives
    assert res["recommendation"].startswith(("keep ", "switch to "))
    assert res["cases"]
    for case in res["cases"].values():
        assert set(case["alternatives"]) == alternatives
        assert set(case["verdicts"]) == alternatives
    json.dumps(res)  # the report is plain JSON


def test_summarize_and_verdicts_on_fixed_numbers():
    s = tuning.summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["p50_ms"] == 3.0 and s["n"] == 5
    assert s["p50_ms"] <= s["p99_ms"] <= 100.0
    assert tuning.summarize([]) == {"n": 0}
    alts = {"a": {"p50_ms": 1.0, "mean_ms": 1.0, "n": 1},
            "b": {"p50_ms": 1.05, "mean_ms": 1.0, "n": 1},
            "c": {"p50_ms": 2.0, "mean_ms": 3.0, "n": 1}}
    v = tuning.timing_verdicts(alts)
    assert v["a"] == "fastest p50" and v["b"].startswith("tie")
    assert v["c"] == "+100% p50, +200% mean"


def test_recommend_keeps_current_unless_an_alternative_wins_without_losing():
    def res(cases):
        return {"current": "cur", "cases": {k: {"alternatives": v} for k, v in cases.items()}}

    fast = {"p50_ms": 1.0, "mean_ms": 1.0, "n": 1}
    slow = {"p50_ms": 2.0, "mean_ms": 2.0, "n": 1}
    assert tuning.recommend(res({"x": {"cur": fast, "alt": slow}})).startswith("keep cur")
    assert tuning.recommend(res({"x": {"cur": slow, "alt": fast}})).startswith("switch to alt")
    mixed = {"x": {"cur": slow, "alt": fast}, "y": {"cur": fast, "alt": slow}}
    assert tuning.recommend(res(mixed)).startswith("keep cur")
    # a lower median bought with a heavier tail (higher mean) is not a win
    spiky = {"p50_ms": 0.5, "mean_ms": 5.0, "n": 1}
    assert tuning.recommend(res({"x": {"cur": fast, "alt": spiky}})).startswith("keep cur")
    # servers: errors decide before latency
    ok = {"p99_ms": 9.0, "n": 100, "sent": 100, "errors": {}}
    failing = {"p99_ms": 1.0, "n": 50, "sent": 100, "errors": {"RESOURCE_EXHAUSTED": 50}}
    assert tuning.recommend(res({"r": {"cur": failing, "alt": ok}}), server=True).startswith(
        "switch to alt")


def test_workload_is_real_requests(workload):
    info = workload.info
    assert info["requests"] == len(workload.requests) == len(workload.features) == 3
    assert 0 < info["candidates_per_request"]["max"] <= 100
    for req, x in zip(workload.requests, workload.features, strict=True):
        assert len(req.candidates.item_ids) == len(x) > 0
        assert x.shape[1] == info["features"]


def test_lightgbm_threads(workload):
    res = tuning.bench_lightgbm_threads(workload, iterations=5, repeats=2)
    check_result(res, "lightgbm_threads", {"num_threads=1", "num_threads=2", "num_threads=0"})
    for case in res["cases"].values():
        for s in case["alternatives"].values():
            check_timed(s)
            assert s["rounds"] == 2 and s["n"] == 10


def test_blas_threads_runs_each_setting_in_its_own_process(workload):
    res = tuning.bench_blas_threads(workload.version_dir, iterations=5, repeats=1,
                                    scan_items=2000)
    names = {"OPENBLAS_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=2"}
    check_result(res, "blas_threads", names)
    assert len(res["cases"]) == 4
    for case in res["cases"].values():
        for s in case["alternatives"].values():
            check_timed(s)
    for name in names:  # the variable took effect where OpenBLAS reports its thread count
        for lib in res["effective_blas"][name]:
            if lib["internal_api"] == "openblas":
                assert lib["num_threads"] == int(name.split("=")[1])


def test_dtype(workload):
    res = tuning.bench_dtype(workload, iterations=5, repeats=1)
    check_result(res, "dtype", {"float32", "float64"})
    mem = res["cases"]["memory_100k_x_64"]["alternatives"]
    assert mem["float32"]["mb"] == pytest.approx(25.6)
    assert mem["float64"]["mb"] == pytest.approx(51.2)
    timed = [c for name, c in res["cases"].items() if not name.startswith("memory_")]
    assert len(timed) == 4
    for case in timed:
        for s in case["alternatives"].values():
            check_timed(s)


def test_batching(workload):
    res = tuning.bench_batching(workload, iterations=3, repeats=1, unbatched_iterations=1)
    check_result(res, "batching", {"batched", "per_candidate"})
    for case in res["cases"].values():
        for s in case["alternatives"].values():
            check_timed(s)


def check_served(res: dict, rate: float, seconds: float) -> None:
    for case in res["cases"].values():
        for s in case["alternatives"].values():
            check_timed(s)
            assert s["sent"] == round(rate * seconds)
            assert s["ok"] == s["sent"] and s["errors"] == {} and s["unanswered"] == 0
            assert s["throughput_rps"] > 0


def test_grpc_server_threadpool_and_aio(workload):
    res = tuning.bench_grpc_server(workload, rates=(20.0,), seconds=1.0, channels=2,
                                   timeout_s=LENIENT_DEADLINE_S)
    check_result(res, "grpc_server", {"threadpool", "aio", "aio-executor"})
    check_served(res, 20.0, 1.0)
    for served in res["served"].values():
        assert served >= 20  # the measured calls plus the warm-up ones


def test_processes_share_one_port(workload):
    res = tuning.bench_processes(workload, rates=(20.0,), seconds=1.0, channels=4,
                                 timeout_s=LENIENT_DEADLINE_S)
    check_result(res, "processes", {"1 process", "2 processes"})
    check_served(res, 20.0, 1.0)
    (split,) = res["split"]  # one 2-process run: calls each process served
    assert len(split) == 2 and sum(split) >= 20


def test_cli_writes_report_and_table(workload, tmp_path: Path, capsys):
    out = tmp_path / "tuning.json"
    code = tuning.main(["--artifacts", str(workload.version_dir), "--output", str(out),
                        "--only", "lightgbm_threads,dtype", "--requests", "2",
                        "--candidates", "50", "--iterations", "2", "--repeats", "1"])
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report["benchmarks"]) == {"lightgbm_threads", "dtype"}
    assert set(report["recommendations"]) == {"lightgbm_threads", "dtype"}
    printed = capsys.readouterr().out
    assert "choice" in printed and "verdict" in printed and "lightgbm_threads:" in printed
