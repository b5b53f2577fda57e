"""The fit-threads report: every scoring workload timed on one thread and on FIT_THREADS, each
pair giving the same value."""

from __future__ import annotations

from shortlist.perf import fit_threads
from shortlist.training import evaluation
from shortlist.training import fit as fit_module


def test_every_workload_gives_the_same_value_on_one_thread_and_on_two(workload, capsys):
    before = (evaluation.map_in_order, fit_module.map_in_order)
    rows = fit_threads.measure(workload.version_dir, 60)
    assert (evaluation.map_in_order, fit_module.map_in_order) == before  # restored
    assert rows[0]["work"] == "evaluate"
    assert any(r["work"].startswith("tuning score: ") for r in rows)
    for r in rows:
        assert r["same"] and r["users"] == 60
        assert r["one_thread_s"] > 0 and r["fit_threads_s"] > 0
    fit_threads.main(["--artifact", str(workload.version_dir), "--users", "30"])
    assert "evaluate" in capsys.readouterr().out
