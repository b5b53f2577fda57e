"""build_features on a hand-made input whose every column is computed by hand."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from shortlist.common.candidates import Candidates
from shortlist.ranking.features import DAY, TIME_FEATURES, FeatureSpec, ItemStats, build_features

NOW = 1_700_000_000
NAN = np.nan

# Five items; unit vectors in 2-D, so similarities are easy to compute by hand.
VECTORS = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6], [0.6, -0.8]], np.float32)
# categories 0, 1, 2:  item0 {0}, item1 {1}, item2 {0, 1}, item3 {2}, item4 {0, 2}
GENRES = sp.csr_matrix(np.array(
    [[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1]], np.float32))
AGE_DAYS = np.array([1.0, 2.0, 3.5, 10.0, 0.0])
# ALS item vectors (unit): item0 and item2 identical, item1 orthogonal to them.
ALS = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]], np.float32)
# Event times per item (CSR): item2 has events 40, 20 and 1 days before NOW, item3 one 5 days
# before NOW, item4 one 1 day *after* the user's time used below.
TIMES = {0: [], 1: [], 2: [NOW - 40 * DAY, NOW - 20 * DAY, NOW - 1 * DAY], 3: [NOW - 5 * DAY],
         4: [NOW - 5 * DAY + DAY]}
USER_TIME = NOW - 5 * DAY
GENERATORS = ("als", "content", "trending")
SPEC = FeatureSpec(GENERATORS, ("content", "als"))
FEATURE_NAMES = SPEC.names


def col(name: str) -> int:
    return FEATURE_NAMES.index(name)


@pytest.fixture
def stats() -> ItemStats:
    return ItemStats(
        popularity=np.log1p(np.array([10, 5, 1, 3, 0], np.float32)),
        trending=np.array([0.5, 0.25, 0.125, 2.0, 0.0], np.float32),
        first_seen=(NOW - AGE_DAYS * DAY).astype(np.int64),
        genres=GENRES, spaces={"content": VECTORS, "als": ALS}, now=NOW,
        times_indptr=np.cumsum([0] + [len(TIMES[i]) for i in range(5)]).astype(np.int64),
        times=np.array([int(t) for i in range(5) for t in TIMES[i]], np.int64),
        diversity_space="content",
    )


def make_input(items=(2, 3, 4), recent=(1, 0), history_length=7) -> Candidates:
    n = len(items)
    # als / content / trending; rank 0 means "did not propose" and goes with a NaN score
    scores = np.array([[0.9, NAN, 0.3], [NAN, 0.7, NAN], [0.5, 0.4, 0.2]], np.float32)[:n]
    ranks = np.array([[1, 0, 3], [0, 2, 0], [2, 1, 1]], np.int32)[:n]
    affinity = np.array([[1.5, 0.1, NAN], [-0.5, 0.2, NAN], [0.25, 0.3, NAN]], np.float32)[:n]
    return Candidates(
        items=np.asarray(items, np.int64), generators=GENERATORS, scores=scores, ranks=ranks,
        affinity=affinity, retrieval_score=np.array([0.05, 0.04, 0.03], np.float32)[:n],
        history_length=history_length, recent_items=np.asarray(recent, np.int64),
        user_time=USER_TIME,
    )


def test_shape_and_dtype(stats):
    x = build_features(make_input(), stats, SPEC)
    assert x.shape == (3, len(FEATURE_NAMES))
    assert x.dtype == np.float32
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_generator_scores_and_ranks(stats):
    x = build_features(make_input(), stats, SPEC)
    for g, name in enumerate(GENERATORS):
        ranks = x[:, col(f"{name}_rank")]
        scores = x[:, col(f"{name}_score")]
        expected_ranks = np.array([[1, 0, 3], [0, 2, 0], [2, 1, 1]], np.float32)[:, g]
        missing = expected_ranks == 0
        # rank 0 ("not proposed") becomes NaN, the other ranks pass through unchanged
        assert np.array_equal(np.isnan(ranks), missing)
        assert np.array_equal(ranks[~missing], expected_ranks[~missing])
        assert np.array_equal(np.isnan(scores), missing)
    np.testing.assert_array_equal(x[:, col("als_score")], np.float32([0.9, NAN, 0.5]))


def test_n_sources_and_retrieval_columns(stats):
    x = build_features(make_input(), stats, SPEC)
    np.testing.assert_array_equal(x[:, col("n_sources")], [2, 1, 3])
    np.testing.assert_array_equal(x[:, col("retrieval_rank")], [1, 2, 3])
    np.testing.assert_allclose(x[:, col("retrieval_score")], [0.05, 0.04, 0.03])
    np.testing.assert_allclose(x[:, col("als_affinity")], [1.5, -0.5, 0.25])
    np.testing.assert_allclose(x[:, col("content_affinity")], [0.1, 0.2, 0.3])
    assert np.isnan(x[:, col("trending_affinity")]).all()


def test_recent_similarity_uses_most_recent_item(stats):
    x = build_features(make_input(recent=(1, 0)), stats, SPEC)
    # newest first: item 1 is the most recent, so recent_sim = vec[c] . vec[1]
    np.testing.assert_allclose(x[:, col("content_recent_sim")], VECTORS[[2, 3, 4]] @ VECTORS[1])
    np.testing.assert_allclose(x[:, col("content_recent_sim")], [0.8, 0.6, -0.8], atol=1e-6)
    # max over the recent items {1, 0}
    np.testing.assert_allclose(x[:, col("content_recent5_sim_max")], [0.8, 0.8, 0.6], atol=1e-6)

    swapped = build_features(make_input(recent=(0, 1)), stats, SPEC)
    np.testing.assert_allclose(swapped[:, col("content_recent_sim")], [0.6, 0.8, 0.6], atol=1e-6)


def test_recent5_considers_only_five_newest(stats):
    # the sixth-newest item (2) would give candidate 2 similarity 1.0; it must be ignored
    x = build_features(make_input(recent=(1, 1, 1, 1, 1, 2)), stats, SPEC)
    np.testing.assert_allclose(x[:, col("content_recent5_sim_max")], [0.8, 0.6, -0.8], atol=1e-6)


def test_out_of_range_recent_items_are_ignored(stats):
    x = build_features(make_input(recent=(99, 1, 0)), stats, SPEC)
    np.testing.assert_allclose(x[:, col("content_recent_sim")], [0.8, 0.6, -0.8], atol=1e-6)


def test_genre_affinity_by_hand(stats):
    x = build_features(make_input(recent=(1, 0)), stats, SPEC)
    # profile = mean genres of items 1 and 0 = [0.5, 0.5, 0]
    # item2 {0,1}: (0.5 + 0.5) / 2;  item3 {2}: 0 / 1;  item4 {0,2}: (0.5 + 0) / 2
    np.testing.assert_allclose(x[:, col("genre_affinity")], [0.5, 0.0, 0.25])

    x = build_features(make_input(recent=(2, 3, 0)), stats, SPEC)
    # profile = ([1,1,0] + [0,0,1] + [1,0,0]) / 3 = [2/3, 1/3, 1/3]
    np.testing.assert_allclose(x[:, col("genre_affinity")], [0.5, 1 / 3, 0.5], rtol=1e-6)


def test_item_side_columns(stats):
    x = build_features(make_input(), stats, SPEC)
    np.testing.assert_allclose(x[:, col("popularity")], np.log1p([1, 3, 0]), rtol=1e-6)
    np.testing.assert_allclose(x[:, col("trending")], [0.125, 2.0, 0.0])
    np.testing.assert_allclose(x[:, col("item_age_days")], [3.5, 10.0, 0.0])


def test_history_length_is_log1p(stats):
    x = build_features(make_input(history_length=7), stats, SPEC)
    np.testing.assert_allclose(x[:, col("history_length")], np.full(3, np.log1p(7)), rtol=1e-6)
    zero = build_features(make_input(history_length=0), stats, SPEC)
    np.testing.assert_array_equal(zero[:, col("history_length")], [0, 0, 0])


def test_no_recent_items_gives_nan_similarities(stats):
    x = build_features(make_input(recent=()), stats, SPEC)
    for name in ("content_recent_sim", "content_recent5_sim_max", "als_recent_sim",
                 "genre_affinity"):
        assert np.isnan(x[:, col(name)]).all(), name
    assert not np.isnan(x[:, col("popularity")]).any()


def test_empty_input(stats):
    x = build_features(make_input(items=(), recent=(1,)), stats, SPEC)
    assert x.shape == (0, len(FEATURE_NAMES))
    assert x.dtype == np.float32
    empty = build_features(make_input(items=(), recent=()), stats, SPEC)
    assert empty.shape == (0, len(FEATURE_NAMES))


def test_item_stats_round_trip(stats, tmp_path):
    stats.save(tmp_path)
    loaded = ItemStats.load(tmp_path, ["content", "als"], "content")
    inp = make_input()
    np.testing.assert_array_equal(build_features(inp, loaded, SPEC),
                                  build_features(inp, stats, SPEC))
    assert loaded.now == NOW


def test_als_item_similarity_to_recent_items(stats):
    x = build_features(make_input(items=(2, 3, 4), recent=(1, 0)), stats, SPEC)
    # most recent item is 1 = (0, 1): dots with items 2, 3, 4 are 0, 0.8, 0
    np.testing.assert_allclose(x[:, col("als_recent_sim")], [0.0, 0.8, 0.0], atol=1e-6)
    # max over recent {1, 0}: item 2 equals item 0 -> 1; item 3 -> 0.8; item 4 -> 0
    np.testing.assert_allclose(x[:, col("als_recent5_sim_max")], [1.0, 0.8, 0.0], atol=1e-6)


def test_popularity_and_age_at_the_users_time(stats):
    x = build_features(make_input(items=(2, 3, 4)), stats, SPEC)
    # window (USER_TIME - 30 days, USER_TIME]: item2 has the event 20 days before NOW (15 days
    # before the user's time); the one 1 day before NOW is after the user's time; 40 days before
    # NOW is 35 days before it. item3's event is exactly at USER_TIME; item4's is after it.
    np.testing.assert_allclose(x[:, col("pop_at_user_time")], np.log1p([1, 1, 0]), rtol=1e-6)
    expected_age = (USER_TIME - (NOW - AGE_DAYS[[2, 3, 4]] * DAY)) / DAY
    np.testing.assert_allclose(x[:, col("item_age_at_user_time")], expected_age, rtol=1e-5)


def test_item_event_times_csr():
    items = np.array([2, 0, 2, 1, 2])
    stamps = np.array([30, 5, 10, 7, 20])
    indptr, times = ItemStats.event_times(items, stamps, 4)
    assert indptr.tolist() == [0, 1, 2, 5, 5]
    assert times.tolist() == [5, 7, 10, 20, 30]


def test_loaded_stats_hold_only_the_search_keys(stats, tmp_path):
    stats.save(tmp_path)
    loaded = ItemStats.load(tmp_path, ["content", "als"], "content")
    assert loaded.times is None and loaded.n_events == stats.n_events
    inp = make_input(items=(2, 3, 4))
    np.testing.assert_array_equal(build_features(inp, loaded, SPEC),
                                  build_features(inp, stats, SPEC))
    loaded.save(tmp_path / "again")  # keys are enough to save again
    again = ItemStats.load(tmp_path / "again", ["content", "als"], "content")
    np.testing.assert_array_equal(build_features(inp, again, SPEC),
                                  build_features(inp, stats, SPEC))


def test_generators_are_matched_by_name(stats):
    """Columns in another order, or a generator the spec lacks, change nothing; one the
    candidates lack is NaN."""
    inp = make_input()
    x = build_features(inp, stats, SPEC)
    shuffled = inp.reorder(("trending", "extra", "content", "als"))
    np.testing.assert_array_equal(build_features(shuffled, stats, SPEC), x)
    partial = inp.reorder(("als", "trending"))
    y = build_features(partial, stats, SPEC)
    for kind in ("score", "rank", "affinity"):
        assert np.isnan(y[:, col(f"content_{kind}")]).all()
    np.testing.assert_array_equal(y[:, col("als_score")], x[:, col("als_score")])


def test_time_features_are_left_out_without_time(stats):
    spec = FeatureSpec(GENERATORS, ("content", "als"), time=False)
    assert not set(TIME_FEATURES) & set(spec.names)
    x = build_features(make_input(), stats, spec)
    assert x.shape == (3, len(spec.names))
    full = build_features(make_input(), stats, SPEC)
    for name in set(spec.names) & set(SPEC.names):
        np.testing.assert_array_equal(x[:, spec.names.index(name)], full[:, col(name)])
    # without time "recent" means nothing: the best and mean similarity to the items carried
    sims = VECTORS[[2, 3, 4]] @ VECTORS[[1, 0]].T
    np.testing.assert_allclose(x[:, spec.names.index("content_history_sim_max")],
                               sims.max(axis=1), atol=1e-6)
    np.testing.assert_allclose(x[:, spec.names.index("content_history_sim_mean")],
                               sims.mean(axis=1), atol=1e-6)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_count_between_matches_a_brute_force_count(data):
    n_items = data.draw(st.integers(1, 6), label="items")
    events = data.draw(st.lists(st.tuples(st.integers(0, n_items - 1), st.integers(0, 50)),
                                max_size=60), label="events")
    # seconds, or milliseconds of a span past what 4 bytes hold (the sliced keys' int64 case)
    scale, offset = data.draw(st.sampled_from([(1, 0), (1, 1_700_000_000),
                                               (10**9, 1_700_000_000_000)]), label="scale")
    events = [(i, offset + t * scale) for i, t in events]
    items = np.array([e[0] for e in events], dtype=np.int64)
    stamps = np.array([e[1] for e in events], dtype=np.int64)
    indptr, times = ItemStats.event_times(items, stamps, n_items)
    s = ItemStats(np.zeros(n_items, np.float32), np.zeros(n_items, np.float32),
                  np.zeros(n_items, np.int64), sp.csr_matrix((n_items, 1), dtype=np.float32),
                  {}, 50, indptr, times)
    query = np.array(data.draw(st.lists(st.integers(0, n_items - 1), min_size=1, max_size=8),
                               label="query"), dtype=np.int64)
    lo, hi = sorted(data.draw(st.tuples(st.integers(-5, 55), st.integers(-5, 55)), label="lo,hi"))
    lo, hi = offset + lo * scale, offset + hi * scale
    expected = [sum(1 for i, t in events if i == q and lo < t <= hi) for q in query.tolist()]
    # both searches: over every key at once (small data) and within each item's slice
    sliced = data.draw(st.booleans(), label="sliced")
    with mock.patch("shortlist.ranking.features._GLOBAL_SEARCH_KEYS", -1 if sliced else 1 << 20):
        assert s.count_between(query, lo, hi).tolist() == expected
        span = int(np.ptp(stamps)) if len(stamps) else 0
        assert s.time_sliced == (sliced or span >= 2**33)  # ms over months: sliced


def test_sliced_time_keys_take_four_bytes_an_event_and_survive_save_load(tmp_path):
    rng = np.random.default_rng(4)
    n_items, n = 50, 3000
    items = rng.integers(0, n_items, n)
    stamps = 1_700_000_000 + rng.integers(0, 3 * 365 * 86400, n)
    indptr, times = ItemStats.event_times(items, stamps, n_items)
    s = ItemStats(np.zeros(n_items, np.float32), np.zeros(n_items, np.float32),
                  np.zeros(n_items, np.int64), sp.csr_matrix((n_items, 1), dtype=np.float32),
                  {}, int(stamps.max()), indptr, times)
    query = np.arange(n_items)
    lo, hi = int(np.quantile(stamps, 0.3)), int(np.quantile(stamps, 0.8))
    expected = [int(((items == q) & (stamps > lo) & (stamps <= hi)).sum()) for q in query]
    with mock.patch("shortlist.ranking.features._GLOBAL_SEARCH_KEYS", 1000):
        s.save(tmp_path)
        assert s.time_sliced and s.time_keys.dtype == np.uint32
        assert s.time_base == int(stamps.min())
        loaded = ItemStats.load(tmp_path, [])
        assert loaded.time_base == s.time_base and loaded.time_sliced
        assert loaded.time_keys.dtype == np.uint32
        assert loaded.count_between(query, lo, hi).tolist() == expected
    assert expected != [0] * n_items


def test_counts_per_event_type_are_columns_of_typed_data_and_survive_save_load(stats,
                                                                                tmp_path):
    stats.event_counts = {"purchase": np.array([0, 1, 3, 0, 0], np.float32),
                          "dislike": np.array([2, 0, 0, 7, 0], np.float32)}
    spec = FeatureSpec(GENERATORS, ("content", "als"), events=("purchase", "dislike", "skip"))
    assert spec.names[:len(FEATURE_NAMES)] == FEATURE_NAMES  # untyped columns unchanged
    assert FeatureSpec.from_json(spec.to_json()) == spec
    assert "events" not in SPEC.to_json()  # an untyped spec is written as before
    x = build_features(make_input(), stats, spec)  # items 2, 3, 4
    at = {n: spec.names.index(f"events_{n}") for n in spec.events}
    np.testing.assert_allclose(x[:, at["purchase"]], np.log1p([3, 0, 0]))
    np.testing.assert_allclose(x[:, at["dislike"]], np.log1p([0, 7, 0]))
    assert np.isnan(x[:, at["skip"]]).all()  # a type without counts is "not available"
    stats.save(tmp_path)
    loaded = ItemStats.load(tmp_path, ["content", "als"], "content")
    np.testing.assert_array_equal(build_features(make_input(), loaded, spec), x)
    new = loaded.append_item([0])
    assert loaded.event_counts["purchase"][new] == 0
