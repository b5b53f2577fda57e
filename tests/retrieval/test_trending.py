"""Trending: hand-computed half-life decay, exclusion, persistence."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shortlist.retrieval.hnsw import exact_top_k
from shortlist.retrieval.trending import DAY, TrendingModel, decay

NOW = 1_700_000_000


def test_decay_known_values():
    ages = np.array([0.0, DAY, 2 * DAY, 0.5 * DAY, -DAY])
    np.testing.assert_allclose(decay(ages, 1.0), [1.0, 0.5, 0.25, 2 ** -0.5, 1.0])
    np.testing.assert_allclose(decay(np.array([30 * DAY]), 30.0), [0.5])
    np.testing.assert_array_equal(decay(ages, 0.0), np.ones(5))


def test_fit_known_answer():
    # item 0: now (1) + one half-life old (0.5); item 1: two half-lives (0.25);
    # item 2: zero weight, not counted; item 3: in the future, clamped to age 0 (1);
    # item 4: no events.
    items = np.array([0, 0, 1, 2, 3])
    stamps = np.array([NOW, NOW - 7 * DAY, NOW - 14 * DAY, NOW, NOW + DAY], dtype=np.int64)
    weights = np.array([1.0, 2.0, 1.0, 0.0, 1.0])
    model = TrendingModel(half_life_days=7.0).fit(items, stamps, 5, NOW, weights)
    np.testing.assert_allclose(model.scores, [1.5, 0.25, 0.0, 1.0, 0.0], rtol=1e-6)
    assert model.scores.dtype == np.float32

    idx, scores = model.top(3)
    np.testing.assert_array_equal(idx, [0, 3, 1])
    np.testing.assert_allclose(scores, [1.5, 1.0, 0.25], rtol=1e-6)


def test_no_decay_counts_events():
    items = np.array([2, 2, 2, 0, 1, 1])
    stamps = NOW - np.array([0, 100, 400, 10, 20, 9000], dtype=np.int64) * DAY
    model = TrendingModel(half_life_days=0.0).fit(items, stamps, 4, NOW)
    np.testing.assert_array_equal(model.scores, [1, 2, 3, 0])


def test_top_respects_exclusion_mask():
    model = TrendingModel(np.array([5, 4, 3, 2, 1], dtype=np.float32))
    exclude = np.array([True, False, True, False, False])
    idx, scores = model.top(2, exclude)
    np.testing.assert_array_equal(idx, [1, 3])
    np.testing.assert_array_equal(scores, [4, 2])
    idx, _ = model.top(10, exclude)
    np.testing.assert_array_equal(idx, [1, 3, 4])
    assert len(model.top(3, np.ones(5, dtype=bool))[0]) == 0
    # A mask longer than the scores (catalog grew) is fine.
    idx, _ = model.top(2, np.array([True, False, False, False, False, False, True]))
    np.testing.assert_array_equal(idx, [1, 2])


def test_extend_and_save_load(tmp_path):
    model = TrendingModel(np.array([0.5, 2.0], dtype=np.float32), half_life_days=3.0)
    model.extend(4)
    np.testing.assert_array_equal(model.scores, [0.5, 2.0, 0.0, 0.0])
    model.extend(2)  # never shrinks
    assert len(model.scores) == 4
    model.save(tmp_path / "trending.npy")
    loaded = TrendingModel.load(tmp_path / "trending.npy", 3.0)
    np.testing.assert_array_equal(loaded.scores, model.scores)
    assert loaded.half_life_days == 3.0
    np.testing.assert_array_equal(loaded.top(4)[0], model.top(4)[0])


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_top_never_returns_excluded_and_returns_min_k_allowed(data):
    n = data.draw(st.integers(0, 40), label="n")
    scores = data.draw(hnp.arrays(np.float32, n, elements=st.sampled_from(
        [0.0, 0.25, 1.0, 3.5]) | st.floats(0, 100, width=32)), label="scores")
    exclude = data.draw(hnp.arrays(np.bool_, n), label="exclude")
    k = data.draw(st.integers(0, 50), label="k")
    idx, top_scores = TrendingModel(scores).top(k, exclude)
    allowed = int((~exclude).sum())
    assert len(idx) == min(k, allowed)
    assert not exclude[idx].any()
    assert len(set(idx.tolist())) == len(idx)
    np.testing.assert_array_equal(top_scores, scores[idx])
    assert np.all(top_scores[:-1] >= top_scores[1:])
    # They are the best allowed scores.
    best = np.sort(scores[~exclude])[::-1][: len(idx)]
    np.testing.assert_array_equal(top_scores, best)
    # Ties go to the lower index, exactly as a full scan would pick.
    masked = np.where(exclude, -np.inf, scores.astype(np.float64))
    np.testing.assert_array_equal(idx, exact_top_k(masked, len(idx)))


def test_top_follows_scores_replaced_by_extend_and_fit():
    model = TrendingModel(np.float32([1.0, 3.0, 2.0]))
    assert model.top(2)[0].tolist() == [1, 2]
    model.extend(5)
    assert model.top(5)[0].tolist() == [1, 2, 0, 3, 4]
    model.fit(np.array([4, 4, 0]), np.full(3, NOW), 5, NOW)
    assert model.top(2)[0].tolist() == [4, 0]


@pytest.mark.parametrize("half_life", [1.0, 30.0])
def test_recent_event_outweighs_older_ones(half_life):
    # One fresh event beats one event a little over a half-life old, but not three of them.
    old = NOW - int(1.01 * half_life * DAY)
    items = np.array([0, 1])
    model = TrendingModel(half_life_days=half_life).fit(items, np.array([NOW, old]), 2, NOW)
    assert model.top(1)[0][0] == 0
    items = np.array([0, 1, 1, 1])
    model.fit(items, np.array([NOW, old, old, old]), 2, NOW)
    assert model.top(1)[0][0] == 1
