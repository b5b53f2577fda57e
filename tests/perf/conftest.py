"""One small fitted artifact and its workload, shared by every tuning measurement's tests."""

from __future__ import annotations

import pytest

from shortlist.perf.workload import Workload, fit_small_artifact, load_workload


@pytest.fixture(scope="session")
def workload(tmp_path_factory) -> Workload:
    root = tmp_path_factory.mktemp("tuning")
    version = fit_small_artifact(root, n_users=200, n_items=300, n_interactions=4000, dim=16,
                                 rounds=20, eval_users=20)
    return load_workload(version, n_requests=3, n_candidates=100)


def check_timed(s: dict) -> None:
    assert s["n"] > 0
    assert s["p50_ms"] > 0 and s["mean_ms"] > 0
    assert s["p99_ms"] >= s["p50_ms"]


def check_result(res: dict, choice: str, alternatives: set[str]) -> None:
    import json

    assert res["choice"] == choice
    assert res["current"] in alternatives
    assert res["recommendation"].startswith(("keep ", "switch to "))
    assert res["cases"]
    for case in res["cases"].values():
        assert set(case["alternatives"]) == alternatives
        assert set(case["verdicts"]) == alternatives
    json.dumps(res)  # the report is plain JSON
