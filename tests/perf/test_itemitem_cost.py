"""The item-item cost measurement on a tiny shape: the matrix it times has the requested
shape, every (weights, history) pair is measured, and the report is written."""

from __future__ import annotations

import json

import numpy as np

from shortlist.perf import itemitem_cost
from tests.perf.conftest import check_timed


def test_random_weights_keep_that_many_distinct_columns_per_row():
    w = itemitem_cost.random_weights(40, 7, np.random.default_rng(0))
    assert w.shape == (40, 40)
    assert (w.getnnz(axis=1) == 7).all()
    assert all(len(set(w[r].indices)) == 7 for r in range(40))


def test_every_pair_is_timed_and_reported(tmp_path, capsys):
    out = tmp_path / "cost.json"
    assert itemitem_cost.main(["--items", "60", "--kept", "5,80", "--history", "3,20",
                               "--iterations", "2", "--repeats", "1", "--output",
                               str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["kept"], r["history"], r["entries"]) for r in rows] == [
        (5, 3, 15), (5, 20, 100), (60, 3, 180), (60, 20, 1200)]  # kept is capped by items
    for r in rows:
        check_timed(r)
    assert "| 60 | 20 | 1,200 |" in capsys.readouterr().out
