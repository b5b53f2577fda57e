"""Shadow comparisons with known answers, and a queue that drops rather than waits."""

from __future__ import annotations

import math
import threading
import time

import pytest

from shortlist.gateway.shadow import ShadowJob, ShadowScorer, overlap, rank_correlation


def test_overlap_and_rank_correlation_known_answers():
    a = [f"i{n}" for n in range(10)]
    assert overlap(a, a) == 1.0 and rank_correlation(a, a) == pytest.approx(1.0)
    assert overlap(a, a[::-1]) == 1.0 and rank_correlation(a, a[::-1]) == pytest.approx(-1.0)
    other = [f"j{n}" for n in range(10)]
    assert overlap(a, other) == 0.0
    assert overlap(a, a[:5] + other[:5]) == 0.5
    assert overlap(a + ["x"] * 0, a[:3]) == 0.3  # the served top 10 is the reference
    assert math.isnan(rank_correlation(["i1"], ["i1"]))
    assert rank_correlation(a, a[:9] + ["z"]) > 0.8


def job(rid: str, score, served=("i1", "i2")) -> ShadowJob:
    return ShadowJob(rid, "exp", "control", tuple(served), score, "shadow")


def test_a_full_queue_drops_and_counts_instead_of_waiting():
    release = threading.Event()
    events, results = [], []
    scorer = ShadowScorer(1, results.append, lambda j, e: events.append((j.request_id, e)))

    def slow():
        release.wait(5)
        return ["i1", "i2"]
    assert scorer.submit(job("r1", slow))
    # r1 is in the worker's hands or queued; the queue (size 1) takes at most one more
    accepted = [scorer.submit(job(f"r{n}", slow)) for n in range(2, 6)]
    assert accepted.count(True) <= 1 and accepted.count(False) >= 3
    assert sum(e == "dropped" for _, e in events) == accepted.count(False)
    release.set()
    scorer.join()
    assert all(r.overlap == 1.0 for r in results)
    scorer.close()


def test_a_failing_shadow_is_counted_and_the_worker_goes_on():
    events, results = [], []
    scorer = ShadowScorer(8, results.append, lambda j, e: events.append(e))

    def boom():
        raise RuntimeError("shadow ranking down")
    scorer.submit(job("r1", boom))
    scorer.submit(job("r2", lambda: ["i2", "i1"]))
    scorer.join()
    assert events == ["failed", "scored"]
    assert results[0].overlap == 1.0 and results[0].correlation == pytest.approx(-1.0)
    scorer.close()
    scorer.close()  # idempotent


def test_the_duty_cycle_rests_the_worker_and_drops_what_comes_meanwhile():
    """A job of ~50 ms at a duty cycle of 0.25 rests the worker ~150 ms: a job offered then is
    passed over, one offered after is scored."""
    events = []
    scorer = ShadowScorer(8, lambda r: None, lambda j, e: events.append((j.request_id, e)),
                          duty_cycle=0.25)

    def slow():
        time.sleep(0.05)
        return ["i1"]
    scorer.submit(job("r1", slow))
    scorer.join()
    assert scorer.resting and not scorer.submit(job("r2", slow))
    time.sleep(0.3)
    assert scorer.submit(job("r3", slow))
    scorer.join()
    assert events == [("r1", "scored"), ("r3", "scored")]  # passed over, not dropped
    scorer.close()
    with pytest.raises(ValueError):
        ShadowScorer(1, lambda r: None, duty_cycle=0.0)
