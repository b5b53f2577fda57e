"""The fit-memory report on the bundled dataset: one row per step asked for, in the
registry's order, with the kernel's peak never below what the step still holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from shortlist.perf import fit_memory

DATA = Path(__file__).resolve().parents[2] / "data" / "ml-latest-small"


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_each_step_reports_a_peak_at_least_what_it_holds(capsys):
    fit_memory.main(["--dataset", str(DATA), "--only", "sequence,itemknn"])
    out = capsys.readouterr().out
    encoded, steps = fit_memory.measure(str(DATA), {"itemknn": {"neighbours": 20}},
                                        ["itemknn", "sequence"])
    assert encoded > 0
    assert [s.name for s in steps] == ["history", "itemknn", "sequence"]
    for s in steps:
        assert s.seconds >= 0 and s.skipped is None
        assert s.peak_over_start_mb >= s.held_mb
    assert "itemknn" in out and "sequence" in out and "RSS once encoded" in out
