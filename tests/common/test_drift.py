"""The drift maths (common/drift.py) on known answers, and its export on a real registry."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shortlist.common.artifacts import ArtifactError
from shortlist.common.candidates import Candidates
from shortlist.common.drift import (
    EPSILON,
    FILE,
    SEGMENT,
    SEGMENTS,
    SOURCES,
    Distribution,
    Monitor,
    Reference,
    Window,
    psi,
    source_counts,
    verdict,
)
from shortlist.common.metrics import Metrics


def test_identical_distributions_have_no_drift():
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    assert psi([2, 3, 5], [20, 30, 50]) == pytest.approx(0.0, abs=1e-15)  # counts or shares


def test_a_known_shift():
    # by hand: (0.7 - 0.5) ln(0.7 / 0.5) + (0.3 - 0.5) ln(0.3 / 0.5)
    #        = 0.2 * 0.336472 + 0.2 * 0.510826 = 0.169460
    assert psi([0.5, 0.5], [0.7, 0.3]) == pytest.approx(0.169460, abs=1e-6)
    assert psi([0.7, 0.3], [0.5, 0.5]) == pytest.approx(0.169460, abs=1e-6)  # symmetric


def test_an_empty_bin_counts_as_epsilon():
    # everything moved to a bin the reference never saw: both bins at the floor on one side
    expected = 2 * (1 - EPSILON) * math.log(1 / EPSILON)
    assert psi([1, 0], [0, 1]) == pytest.approx(expected)
    assert psi([1, 0], [0, 1]) == pytest.approx(18.4189, abs=1e-4)


def test_verdicts_follow_the_thresholds():
    assert [verdict(v) for v in (0.0, 0.099, 0.1, 0.25, 0.2501)] == [
        "stable", "stable", "watch", "watch", "retrain"]


def test_numeric_bins_put_a_value_on_an_edge_in_the_bin_above():
    d = Distribution((0.25, 0.25, 0.5), edges=(1.0, 2.0))
    assert d.counts(np.array([0.5, 1.0, 1.5, 2.0, 9.0])).tolist() == [1, 2, 2]


def test_a_request_bins_its_few_values_as_the_reference_binned_its_many():
    d = Distribution.quantiles(np.random.default_rng(5).normal(size=200), 10)
    values = np.concatenate([np.random.default_rng(6).normal(size=50).astype(np.float32),
                             np.asarray(d.edges, np.float32), d.edges, [np.nan, -np.inf]])
    assert d.count_few(values.tolist()) == d.counts(values).tolist()


def test_deciles_give_equal_shares_and_ties_merge_cuts():
    values = np.arange(1000, dtype=np.float64)
    d = Distribution.quantiles(values, 10)
    assert d.bins == 10 and d.observations == 1000
    assert d.proportions == pytest.approx([0.1] * 10)
    tied = Distribution.quantiles(np.array([0.0] * 90 + list(range(1, 11))), 10)
    assert tied.bins < 10 and sum(tied.proportions) == pytest.approx(1.0)


def test_the_reference_round_trips(tmp_path):
    ref = Reference({
        "score": Distribution.quantiles(np.random.default_rng(3).normal(size=500), 10, "s"),
        SEGMENT: Distribution.categorical(SEGMENTS, [0, 1, 2, 7], "segments"),
    }, {"users": 10, "k": 10})
    ref.save(tmp_path)
    back = Reference.load(tmp_path)
    assert back == ref
    assert back.signals["score"].edges == ref.signals["score"].edges  # floats exactly
    assert back.signals[SEGMENT].index("light") == 2


def test_a_version_without_a_reference_loads_none_and_a_bad_one_is_an_artifact_error(tmp_path):
    assert Reference.load(tmp_path) is None
    (tmp_path / FILE).write_text('{"schema_version": 99, "signals": {}}')
    with pytest.raises(ArtifactError, match="schema_version"):
        Reference.load(tmp_path)
    (tmp_path / FILE).write_text('{"schema_version": 1, "signals": {"x": {"proportions": '
                                 '[0.5, 0.5], "edges": []}}}')
    with pytest.raises(ArtifactError, match="2 proportions for 1 bins"):
        Reference.load(tmp_path)


def test_the_window_forgets_the_oldest_updates():
    w = Window(bins=2, size=3)
    for counts in ([5, 0], [0, 1], [0, 1], [0, 1]):  # the fourth pushes out the first
        w.add(np.array(counts))
    assert w.totals().tolist() == [0, 3] and w.updates == 3
    w.add(np.array([2, 2]))
    assert w.totals().tolist() == [2, 4]


def test_concurrent_updates_are_all_counted():
    w = Window(bins=1, size=100_000)

    def add() -> None:
        for _ in range(2000):
            w.add(np.ones(1, np.int64))

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert w.totals().tolist() == [8000]


def monitor(window: int = 100) -> Monitor:
    return Monitor(Reference({
        SOURCES: Distribution.categorical(("als", "trending"), [3, 1]),
        SEGMENT: Distribution.categorical(SEGMENTS, [0, 0, 1, 3]),
        "score": Distribution((0.5, 0.5), edges=(0.0,)),
    }), window)


def test_monitor_readings_against_the_reference():
    m = monitor()
    assert [(r.signal, r.psi, r.observations) for r in m.readings()] == [
        (SOURCES, None, 0), (SEGMENT, None, 0), ("score", None, 0)]
    m.add(SOURCES, np.array([30, 10]))
    for segment in ("established", "established", "established", "light", "nonsense"):
        m.add_label(SEGMENT, segment)
    m.add_values("score", np.array([-1.0, 1.0, 2.0, 3.0]))  # 1/4 below the edge, 3/4 above
    got = {r.signal: r for r in m.readings()}
    assert got[SOURCES].psi == pytest.approx(0.0, abs=1e-12) and got[SOURCES].observations == 40
    assert got[SEGMENT].psi == pytest.approx(0.0, abs=1e-12) and got[SEGMENT].observations == 4
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.25 (ln 2 + ln 1.5)
    assert got["score"].psi == pytest.approx(0.25 * math.log(3), abs=1e-9)
    m.add("no-such-signal", np.array([1]))  # a signal the reference lacks is not counted


def test_source_counts_count_every_generator_that_proposed_a_slot():
    ranks = np.array([[1, 0], [2, 1], [0, 2]], np.int32)
    c = Candidates(np.arange(3), ("als", "trending"), np.zeros((3, 2), np.float32), ranks,
                   np.zeros((3, 2), np.float32), np.zeros(3, np.float32))
    assert source_counts(c, ("als", "trending")) == [2, 2]
    assert source_counts(c, ("trending", "ease", "als")) == [2, 0, 2]
    assert source_counts(c.take(np.zeros(0, np.int64)), ("als",)) == [0]


def scrape(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_the_gauges_are_computed_at_scrape_time_and_absent_without_a_reference():
    metrics = Metrics("retrieval")
    current: list[Monitor | None] = [None]
    metrics.watch_drift(lambda: current[0])
    assert not [k for k in scrape(metrics) if k[0].startswith("shortlist_drift")]
    current[0] = m = monitor()
    got = scrape(metrics)
    labels = (("server", "retrieval"), ("signal", SEGMENT))
    assert got[("shortlist_drift_window_observations", labels)] == 0
    assert ("shortlist_drift_psi", labels) not in got  # nothing observed yet
    for _ in range(4):
        m.add_label(SEGMENT, "new")
    got = scrape(metrics)
    # all "new" against 1/4 light, 3/4 established, by hand with the floor
    e = np.maximum([0, 0, 0.25, 0.75], EPSILON)
    a = np.maximum([1, 0, 0, 0], EPSILON)
    assert got[("shortlist_drift_psi", labels)] == pytest.approx(float(np.sum((a - e) * np.log(
        a / e))))
    assert got[("shortlist_drift_window_observations", labels)] == 4
