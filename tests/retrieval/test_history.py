"""UserHistory: CSR base ordered by time, online overlay, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from shortlist.common.ordering import TIE_SEED, pair_hash
from shortlist.retrieval.history import UserHistory


@pytest.fixture()
def history() -> UserHistory:
    # Shuffled events of 3 users; user 1 has none; user 3 exists only through n_users.
    users = np.array([2, 0, 2, 0, 0, 2, 4])
    items = np.array([7, 1, 8, 2, 3, 9, 5])
    stamps = np.array([300, 50, 100, 10, 30, 200, 5])
    weights = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    return UserHistory.from_events(users, items, stamps, weights, n_users=5)


def test_from_events_orders_each_user_by_time(history):
    assert history.n_users == 5
    items, stamps, weights = history.events(0)
    np.testing.assert_array_equal(items, [2, 3, 1])
    np.testing.assert_array_equal(stamps, [10, 30, 50])
    np.testing.assert_array_equal(weights, [4.0, 5.0, 2.0])
    items, stamps, weights = history.events(2)
    np.testing.assert_array_equal(items, [8, 9, 7])
    np.testing.assert_array_equal(stamps, [100, 200, 300])
    np.testing.assert_array_equal(weights, [3.0, 6.0, 1.0])
    np.testing.assert_array_equal(history.events(4)[0], [5])
    assert items.dtype == np.int64


@pytest.mark.parametrize("user", [-1, 1, 3, 5, 99])
def test_users_without_events(history, user):
    items, stamps, weights = history.events(user)
    assert len(items) == len(stamps) == len(weights) == 0


def test_same_timestamp_ties_follow_the_one_event_order():
    """Ties in time in the order training's splits and the sequence generator use
    (common.ordering), whatever the rows' order."""
    users, items, stamps = np.array([0, 0, 0]), np.array([9, 3, 6]), np.array([5, 5, 1])
    tied = [3, 9] if pair_hash(0, 3, TIE_SEED) < pair_hash(0, 9, TIE_SEED) else [9, 3]
    for rows in ([0, 1, 2], [2, 1, 0], [1, 0, 2]):
        h = UserHistory.from_events(users[rows], items[rows], stamps[rows], np.ones(3),
                                    n_users=1)
        np.testing.assert_array_equal(h.events(0)[0], [6, *tied])


def test_random_events_keep_every_event_in_time_order():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 20, 500)
    items = rng.integers(0, 50, 500)
    stamps = rng.integers(0, 10_000, 500)
    h = UserHistory.from_events(users, items, stamps, np.ones(500), n_users=25)
    total = 0
    for u in range(25):
        it, st, _ = h.events(u)
        mask = users == u
        assert sorted(zip(st.tolist(), it.tolist(), strict=True)) == sorted(
            zip(stamps[mask].tolist(), items[mask].tolist(), strict=True))
        assert np.all(np.diff(st) >= 0)
        total += len(it)
    assert total == 500


def test_append_overlay_shows_up_in_events(history):
    assert not history.has_overlay(0)
    history.append(0, 11, 400, 1.5)
    history.append(0, 12, 500, 0.5)
    assert history.has_overlay(0) and not history.has_overlay(2)
    items, stamps, weights = history.events(0)
    np.testing.assert_array_equal(items, [2, 3, 1, 11, 12])
    np.testing.assert_array_equal(stamps, [10, 30, 50, 400, 500])
    np.testing.assert_allclose(weights, [4.0, 5.0, 2.0, 1.5, 0.5])
    assert items.dtype == np.int64 and stamps.dtype == np.int64
    # A user unknown at training time (index past the base) gets an overlay-only history.
    history.append(7, 3, 1_700_000_000, 1.0)
    items, stamps, _ = history.events(7)
    np.testing.assert_array_equal(items, [3])
    np.testing.assert_array_equal(stamps, [1_700_000_000])
    # Other users are untouched.
    np.testing.assert_array_equal(history.events(2)[0], [8, 9, 7])


def test_save_load_round_trip(tmp_path, history):
    path = tmp_path / "history.npz"
    history.save(path)
    loaded = UserHistory.load(path)
    assert loaded.n_users == history.n_users
    for u in range(history.n_users):
        for a, b in zip(loaded.events(u), history.events(u), strict=True):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype


@pytest.mark.parametrize("base, step", [(1_700_000_000, 1), (0, 1),  # seconds: 4 bytes
                                        (1_700_000_000_000, 10**9)])  # ms over years: 8
def test_times_are_held_after_the_earliest_and_given_back_whole(tmp_path, base, step):
    rng = np.random.default_rng(1)
    users = rng.integers(0, 30, 400)
    stamps = base + rng.integers(0, 100_000, 400) * step
    h = UserHistory.from_events(users, rng.integers(0, 50, 400), stamps, np.ones(400),
                                n_users=30)
    assert h.time_base == stamps.min()
    assert h.timestamps.dtype == (np.uint32 if step == 1 else np.int64)
    h.save(tmp_path / "h.npz")
    loaded = UserHistory.load(tmp_path / "h.npz")
    for u in range(30):
        got = loaded.events(u)[1]
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, np.sort(stamps[users == u]))


def test_a_history_saved_with_absolute_times_still_loads(tmp_path):
    np.savez(tmp_path / "old.npz", indptr=np.array([0, 2]), items=np.array([3, 4], np.int32),
             timestamps=np.array([1_700_000_000, 1_700_000_050]),
             weights=np.ones(2, np.float32))
    h = UserHistory.load(tmp_path / "old.npz")
    np.testing.assert_array_equal(h.events(0)[1], [1_700_000_000, 1_700_000_050])
