"""perf/drift.py on the trained synthetic artifact: every call timed, well-formed output. How
fast is the machine's business, so no test asserts a duration."""

from __future__ import annotations

import json

import pytest

from shortlist.common import artifacts
from shortlist.perf import drift


def test_every_observe_call_and_scrape_is_timed(trained, capsys):
    assert drift.main(["--artifacts", str(trained), "--users", "5", "--calls", "40"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["version"] == artifacts.resolve(trained).name
    for key in ("retrieval_observe", "ranking_observe", "retrieval_scrape", "ranking_scrape"):
        timed = report[key]
        assert timed["calls"] == (40 if key.endswith("observe") else 2)
        assert 0 < timed["p50_us"] <= timed["p99_us"]


def test_a_version_without_references_is_refused(trained, tmp_path):
    import shutil

    from shortlist.common.drift import FILE

    copy = tmp_path / "v"
    shutil.copytree(artifacts.resolve(trained), copy)
    (copy / "ranking" / FILE).unlink()
    with pytest.raises(ValueError, match="no drift references"):
        drift.measure(copy, users=2, calls=2)
