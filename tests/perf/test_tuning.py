"""perf.tuning, the runner: selected measurements into one report, written as JSON and a table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shortlist.perf import tuning


def test_cli_writes_report_and_table(workload, tmp_path: Path, capsys):
    out = tmp_path / "tuning.json"
    code = tuning.main(["--artifacts", str(workload.version_dir), "--output", str(out),
                        "--only", "lightgbm_threads,dtype", "--requests", "2",
                        "--candidates", "50", "--iterations", "2", "--repeats", "1"])
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report) >= {"created_at", "command", "environment", "loadavg_end", "workload",
                           "settings", "benchmarks", "recommendations"}
    assert set(report["benchmarks"]) == {"lightgbm_threads", "dtype"}
    assert set(report["recommendations"]) == {"lightgbm_threads", "dtype"}
    for res in report["benchmarks"].values():
        assert res["seconds"] >= 0 and len(res["loadavg_1min"]) == 2
    printed = capsys.readouterr().out
    assert "choice" in printed and "verdict" in printed and "lightgbm_threads:" in printed


def test_unknown_measurement_is_refused(tmp_path: Path):
    with pytest.raises(SystemExit, match="unknown benchmark"):
        tuning.main(["--only", "lightgbm_threads,aio", "--output", str(tmp_path / "t.json")])


def test_every_measurement_module_is_run():
    assert list(tuning.BENCHMARKS) == ["lightgbm_threads", "blas_threads", "dtype", "batching",
                                       "server_workers", "processes"]
