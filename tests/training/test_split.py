"""encode / dedupe / holdout_last on small hand-built event logs."""

from __future__ import annotations

import numpy as np
import pytest

from shortlist.common.events import EventTypes
from shortlist.common.ordering import TIE_SEED, pair_hash
from shortlist.common.vocab import Vocabulary
from shortlist.training.datasets import Dataset, Items
from shortlist.training.split import Events, dedupe, encode, holdout_last, user_order


def events(rows: list[tuple[int, int, int]], weights=None) -> Events:
    """rows of (user, item, timestamp)."""
    u, i, t = (np.asarray(c, np.int64) for c in zip(*rows, strict=True))
    w = np.asarray(weights if weights is not None else np.arange(len(rows)), np.float32)
    return Events(u, i, t, w)


def as_set(ev: Events) -> set[tuple[int, int, int, float]]:
    return set(zip(ev.users.tolist(), ev.items.tolist(), ev.timestamps.tolist(),
                   ev.weights.tolist(), strict=True))


def test_dedupe_keeps_latest_event_per_user_item():
    ev = events([
        (0, 1, 50),   # row 0: superseded by row 2
        (0, 2, 10),   # row 1
        (0, 1, 90),   # row 2: latest (0, 1)
        (1, 1, 30),   # row 3: another user, same item: kept
        (0, 1, 70),   # row 4: not the latest
        (1, 3, 5),    # row 5: tie on timestamp with row 6...
        (1, 3, 5),    # row 6: ...the later row wins
    ])
    out = dedupe(ev)
    assert len(out) == 4
    # original relative order is preserved; weights identify which row survived
    assert out.weights.tolist() == [1, 2, 3, 6]
    assert as_set(out) == {(0, 2, 10, 1), (0, 1, 90, 2), (1, 1, 30, 3), (1, 3, 5, 6)}


def test_dedupe_no_duplicates_is_identity():
    ev = events([(2, 1, 5), (0, 1, 9), (0, 2, 1)])
    out = dedupe(ev)
    assert as_set(out) == as_set(ev)
    assert out.users.tolist() == [2, 0, 0]


def test_encode_indexes_and_dedupes():
    ds = Dataset.from_ids(
        name="t", user_ids=np.array(["bob", "amy", "bob", "bob"]),
        item_ids=np.array(["b", "a", "b", "zzz"]), weights=np.float32([1, 2, 3, 4]),
        timestamps=np.array([5, 6, 7, 8]), items=Items(["a", "b"], ["A", "B"], [[], []], []),
    )
    users, ev = encode(ds, Vocabulary(["a", "b"]))
    assert users.all_ids == ["amy", "bob"]  # sorted: indices do not depend on row order
    # bob's two "b" events collapse to the later one; unknown items map to -1
    assert as_set(ev) == {(0, 0, 6, 2.0), (1, 1, 7, 3.0), (1, -1, 8, 4.0)}


def test_encode_without_time_sums_duplicate_weights():
    ds = Dataset.from_ids(
        name="t", user_ids=np.array(["bob", "amy", "bob", "bob"]),
        item_ids=np.array(["b", "a", "b", "a"]), weights=np.float32([1, 2, 3, 4]),
        timestamps=np.zeros(4, np.int64), items=Items(["a", "b"], ["A", "B"], [[], []], []),
        has_timestamps=False,
    )
    _, ev = encode(ds, Vocabulary(["a", "b"]))
    assert as_set(ev) == {(0, 0, 0, 2.0), (1, 1, 0, 4.0), (1, 0, 0, 4.0)}


def timeline(user: int, n: int, t0: int = 1000) -> list[tuple[int, int, int]]:
    """n events for one user on items 100+k at increasing timestamps."""
    return [(user, 100 + k, t0 + 10 * k) for k in range(n)]


def test_holdout_last_holds_out_exactly_each_eligible_users_last_item():
    rows = timeline(0, 6) + timeline(1, 5) + timeline(2, 4) + timeline(4, 9)
    rng = np.random.default_rng(0)
    rows = [rows[j] for j in rng.permutation(len(rows))]  # input order must not matter
    ev = events(rows)
    mask = holdout_last(ev, 1, min_items=5)
    held = sorted(zip(ev.users[mask].tolist(), ev.items[mask].tolist(), strict=True))
    # users 0, 1, 4 have >= 5 items: their latest item (highest timestamp) is held out;
    # user 2 has 4 items and holds out nothing; user 3 does not exist.
    assert held == [(0, 105), (1, 104), (4, 108)]
    assert mask.sum() == 3


def test_holdout_last_n_items():
    ev = events(timeline(0, 6) + timeline(1, 3))
    mask = holdout_last(ev, 2, min_items=3)
    assert sorted(ev.items[mask & (ev.users == 0)].tolist()) == [104, 105]
    assert sorted(ev.items[mask & (ev.users == 1)].tolist()) == [101, 102]


def tie_rank(user: int, items: list[int]) -> list[int]:
    """``items`` (all at one timestamp) from earliest to latest, as common.ordering says."""
    keys = pair_hash(np.full(len(items), user), np.array(items), TIE_SEED)
    return [items[j] for j in np.argsort(keys, kind="stable")]


def test_holdout_last_timestamp_ties_broken_by_the_pair_hash_whatever_the_row_order():
    rows = [(0, 7, 500), (0, 3, 100), (0, 9, 500), (0, 1, 200), (0, 4, 500), (0, 2, 300)]
    tied = tie_rank(0, [7, 9, 4])
    ev = events(rows)
    assert ev.items[holdout_last(ev, 1, min_items=5)].tolist() == tied[-1:]
    assert sorted(ev.items[holdout_last(ev, 2, min_items=5)].tolist()) == sorted(tied[-2:])
    rev = events(rows[::-1])
    assert rev.items[holdout_last(rev, 1, min_items=5)].tolist() == tied[-1:]


def test_tied_latest_items_are_not_chosen_by_catalog_order():
    """The old rule (the highest item index is the latest) made every tied test item the
    last in the catalog: on ml-100k, the most obscure of the session. Over many users whose
    three items share a timestamp, each of the three is held out about a third of the time."""
    n = 3000
    rows = [(u, i, 100) for u in range(n) for i in (10 + u % 7, 500, 990)]
    rows += [(u, 1000 + k, k) for u in range(n) for k in range(3)]  # earlier events
    ev = events(rows)
    held = ev.items[holdout_last(ev, 1, min_items=5)]
    assert len(held) == n
    share = np.array([(held < 500).mean(), (held == 500).mean(), (held == 990).mean()])
    assert np.all(np.abs(share - 1 / 3) < 0.05), share


def test_user_order_groups_users_then_time_then_the_pair_hash():
    ev = events([(1, 5, 20), (0, 9, 10), (1, 2, 20), (0, 1, 30), (1, 8, 10)])
    order = user_order(ev)
    assert list(zip(ev.users[order].tolist(), ev.items[order].tolist(), strict=True)) == [
        (0, 9), (0, 1), (1, 8), *((1, i) for i in tie_rank(1, [5, 2]))]


@pytest.mark.parametrize(("n_events", "expected"), [(4, 0), (5, 1), (9, 1), (10, 2), (17, 3)])
def test_holdout_fraction(n_events, expected):
    ev = events(timeline(3, n_events))
    mask = holdout_last(ev, 0.2, min_items=5)
    # floor(0.2 * n), at least one, for eligible users; always the latest ones
    assert mask.sum() == expected
    assert sorted(ev.items[mask].tolist()) == list(range(100 + n_events - expected,
                                                         100 + n_events))


def test_holdout_fraction_per_user():
    ev = events(timeline(0, 10) + timeline(1, 20) + timeline(2, 3))
    mask = holdout_last(ev, 0.25, min_items=5)
    assert np.bincount(ev.users[mask], minlength=3).tolist() == [2, 5, 0]


def test_holdout_float_one_means_one_item():
    ev = events(timeline(0, 6))
    assert holdout_last(ev, 1.0, min_items=5).sum() == 1


def test_holdout_empty():
    ev = Events(*(np.zeros(0, np.int64) for _ in range(3)), np.zeros(0, np.float32))
    assert holdout_last(ev, 1).shape == (0,)


def test_random_holdout_draws_per_user_and_ignores_row_order():
    from shortlist.training.split import holdout, holdout_random

    ev = Events(np.repeat(np.arange(6), 8), np.tile(np.arange(8), 6), np.zeros(48, np.int64),
                np.ones(48, np.float32))
    mask = holdout_random(ev, 2, 5, seed=3)
    assert np.bincount(ev.users[mask]).tolist() == [2] * 6
    shuffled = ev.take(np.random.default_rng(0).permutation(48))
    again = holdout_random(shuffled, 2, 5, seed=3)
    assert set(zip(ev.users[mask].tolist(), ev.items[mask].tolist(), strict=True)) == set(
        zip(shuffled.users[again].tolist(), shuffled.items[again].tolist(), strict=True))
    other = holdout_random(ev, 2, 5, seed=4)
    assert not np.array_equal(mask, other)
    # the latest items when there is time, whatever the seed
    timed = Events(ev.users, ev.items, np.tile(np.arange(8), 6), ev.weights)
    assert (timed.timestamps[holdout(timed, 1, 5, by_time=True, seed=9)] == 7).all()


def typed_dataset(events: list[str], has_timestamps: bool = True) -> Dataset:
    n = len(events)
    names = sorted(set(events))
    return Dataset.from_ids(
        name="t", user_ids=np.array(["bob"] * n), item_ids=np.array([f"i{k % 3}" for k in
                                                                     range(n)]),
        weights=np.ones(n, np.float32), timestamps=np.arange(n) * (1 if has_timestamps else 0),
        items=Items(["i0", "i1", "i2"], ["", "", ""], [[], [], []], []),
        has_timestamps=has_timestamps,
        event_codes=np.asarray([names.index(e) for e in events], np.int16), event_names=names)


def test_typed_events_are_weighed_by_their_type_and_the_latest_type_of_a_pair_wins():
    # i0: view then dislike -> a dislike; i1: purchase; i2: view
    _, ev = encode(typed_dataset(["view", "purchase", "view", "dislike"]),
                   Vocabulary(["i0", "i1", "i2"]))
    got = {int(i): (float(w), ev.types.names[k]) for i, w, k in
           zip(ev.items, ev.weights, ev.kinds, strict=True)}
    assert got == {0: (-2.0, "dislike"), 1: (4.0, "purchase"), 2: (1.0, "view")}
    assert ev.negative.tolist() == [ev.types.names[k] == "dislike" for k in ev.kinds]
    assert len(ev.positive()) == 2


def test_without_time_a_pair_keeps_its_strongest_type_with_the_summed_weight():
    _, ev = encode(typed_dataset(["dislike", "view", "view", "view"], has_timestamps=False),
                   Vocabulary(["i0", "i1", "i2"]))
    got = {int(i): float(w) for i, w in zip(ev.items, ev.weights, strict=True)}
    assert got == {0: -4.0, 1: 1.0, 2: 1.0}  # i0: a dislike outranks a view; raw 1 + 1


def test_configured_weights_and_reweighting_keep_the_codes():
    _, ev = encode(typed_dataset(["view", "purchase", "skip"]), Vocabulary(["i0", "i1", "i2"]),
                   {"purchase": 10})
    assert sorted(ev.weights.tolist()) == [-0.5, 1.0, 10.0]
    again = ev.reweighted(ev.types.replace(purchase=2.0))
    assert sorted(again.weights.tolist()) == [-0.5, 1.0, 2.0]
    assert again.kinds is ev.kinds


def test_holdout_never_holds_out_a_negative_event_and_counts_only_positive_ones():
    from shortlist.training.split import holdout

    # user 0: six events, the latest a dislike -> the latest positive is held out
    # user 1: five events, two of them dislikes -> three positives: too few to hold out
    types = EventTypes.standard()
    view, dislike = types.code("view"), types.code("dislike")
    kinds = np.array([view] * 5 + [dislike] + [view] * 3 + [dislike] * 2, np.int16)
    users = np.array([0] * 6 + [1] * 5)
    items = np.arange(11)
    raw = np.ones(11, np.float32)
    ev = Events(users, items, np.arange(11), types.apply(raw, kinds), kinds, raw, types)
    for by_time in (True, False):
        mask = holdout(ev, 1, 5, by_time)
        assert mask.sum() == 1 and not ev.negative[mask].any() and users[mask].tolist() == [0]
    assert np.flatnonzero(holdout(ev, 1, 5, True)).tolist() == [4]


def test_untyped_data_has_no_types_and_nothing_negative():
    ds = typed_dataset(["view", "view"])
    ds.event_codes, ds.event_names = None, []
    _, ev = encode(ds, Vocabulary(["i0", "i1", "i2"]))
    assert ev.kinds is None and ev.types is None and ev.raw is None
    assert not ev.negative.any() and ev.positive() is ev
