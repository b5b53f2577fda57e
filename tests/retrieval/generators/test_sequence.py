"""The sequence generator: known transitions on tiny ordered logs, and the serving contract."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shortlist.common.catalog import ItemCatalog
from shortlist.retrieval.generators import (
    FitData,
    GeneratorSkipped,
    SequenceGenerator,
    UserState,
    fit_or_skip,
)
from shortlist.retrieval.generators.sequence import (
    SequenceConfig,
    top_per_csr_row,
    transition_counts,
)
from shortlist.retrieval.history import UserHistory
from shortlist.training.split import Events

DAY = 86_400


def fit_data(rows, n_items: int) -> FitData:
    """``rows``: (user, item, timestamp)."""
    users = np.array([u for u, _, _ in rows], np.int64)
    items = np.array([i for _, i, _ in rows], np.int64)
    stamps = np.array([t for _, _, t in rows], np.int64)
    ev = Events(users, items, stamps, np.ones(len(rows), np.float32))
    catalog = ItemCatalog([f"i{i}" for i in range(n_items)], [f"t{i}" for i in range(n_items)],
                          [[] for _ in range(n_items)])
    return FitData(ev, int(users.max()) + 1, catalog, int(stamps.max()))


def chain(user: int, items, start: int = 0, step: int = 1):
    return [(user, i, start + k * step) for k, i in enumerate(items)]


def session(items, now: int = 0, history=()) -> UserState:
    """A user whose stored history is ``history`` (oldest first) and whose request carries
    ``items`` as recent items, oldest first."""
    hist = np.asarray(history, np.int64)
    return UserState.of(-1 if not len(hist) else 0, hist, np.arange(len(hist), dtype=np.int64),
                        np.ones(len(hist), np.float32), np.asarray(items, np.int64), now)


# Everyone walks 0 -> 1 -> 2 -> 3; two users go 0 -> 4 instead of 0 -> 1.
WALKS = (chain(0, [0, 1, 2, 3]) + chain(1, [0, 1, 2, 3]) + chain(2, [0, 1, 2, 3])
         + chain(3, [0, 4]) + chain(4, [0, 4, 5]))


def test_transition_counts_weigh_each_later_item_by_one_over_its_gap():
    d = fit_data(chain(0, [0, 1, 2]) + chain(1, [2, 2, 0]), 3)
    ev = d.events
    c = transition_counts(ev.users, ev.items, ev.timestamps, np.ones(len(ev.users), np.float32),
                          3, window=2).toarray()
    # user 0: 0->1, 1->2 (gap 1), 0->2 (gap 2); user 1: 2->2 is no transition, 2->0 twice
    # (gap 1 from the second 2, gap 2 from the first)
    expected = np.zeros((3, 3), np.float32)
    expected[0, 1] = expected[1, 2] = 1.0
    expected[0, 2] = 0.5
    expected[2, 0] = 1.0 + 0.5
    np.testing.assert_allclose(c, expected)


def test_order_comes_from_timestamps_not_from_row_order():
    rows = chain(0, [0, 1, 2])[::-1]  # the file lists the walk backwards
    gen = SequenceGenerator.fit(fit_data(rows, 3), SequenceConfig(window=1))
    w = gen.weights.toarray()
    assert w[0, 1] == pytest.approx(1.0) and w[1, 2] == pytest.approx(1.0)
    assert w[1, 0] == 0 and w[2, 1] == 0


def test_tied_events_step_in_the_served_historys_order():
    """Two items at one time: the transition runs the way the served history orders them
    (common.ordering), not from the lower catalog index to the higher."""
    rows = [(0, 4, 10), (0, 1, 10)]
    gen = SequenceGenerator.fit(fit_data(rows, 6), SequenceConfig(window=1))
    history = UserHistory.from_events(np.zeros(2, np.int64), np.array([4, 1]),
                                      np.array([10, 10]), np.ones(2), n_users=1)
    first, then = history.events(0)[0].tolist()
    w = gen.weights.toarray()
    assert w[first, then] == pytest.approx(1.0) and w[then, first] == 0
    many = [(u, i, 7) for u in range(400) for i in (2, 5)]
    counts = transition_counts(np.array([r[0] for r in many]), np.array([r[1] for r in many]),
                               np.full(len(many), 7), np.ones(len(many), np.float32), 6, 1)
    up, down = counts[2, 5], counts[5, 2]
    assert up + down == 400 and 150 < up < 250  # about half each way


def test_transitions_are_next_item_probabilities():
    gen = SequenceGenerator.fit(fit_data(WALKS, 6), SequenceConfig(window=1))
    w = gen.weights.toarray()
    assert w[0, 1] == pytest.approx(3 / 5) and w[0, 4] == pytest.approx(2 / 5)
    assert w[1, 2] == pytest.approx(1.0)
    np.testing.assert_allclose(w.sum(axis=1), [1, 1, 1, 0, 1, 0], rtol=1e-6)


def test_a_session_gets_what_follows_its_latest_item_first():
    gen = SequenceGenerator.fit(fit_data(WALKS, 6), SequenceConfig(window=1, last_items=2,
                                                                  position_decay=0.3))
    banned = np.zeros(6, bool)
    banned[[0, 1]] = True  # the session's own items, as retrieval bans them
    ids, scores = gen.propose(session([0, 1]), 5, banned)
    # newest item 1 -> 2 (weight 1 x 1.0); older item 0 -> 4 (0.3 x 2/5)
    assert ids.tolist() == [2, 4]
    np.testing.assert_allclose(scores, [1.0, 0.3 * 2 / 5], rtol=1e-6)
    # The same items in the other order: 0 is the latest now, so its followers lead
    # (0 -> 4: 1 x 2/5 against 1 -> 2: 0.3 x 1).
    ids, _ = gen.propose(session([1, 0]), 5, banned)
    assert ids.tolist() == [4, 2]


def test_the_latest_items_are_taken_by_time_with_the_request_after_the_history():
    gen = SequenceGenerator.fit(fit_data(WALKS, 6), SequenceConfig(window=1, last_items=1))
    banned = np.zeros(6, bool)
    # Stored history ends with 4; the request's recent item 1 is newer: 1 -> 2 proposes.
    ids, _ = gen.propose(session([1], now=10, history=[0, 4]), 5, banned)
    assert ids.tolist() == [2]
    # Without the request, the history's latest item (4 -> 5) proposes.
    ids, _ = gen.propose(session([], now=10, history=[0, 4]), 5, banned)
    assert ids.tolist() == [5]


def test_old_transitions_decay_with_the_half_life():
    old = chain(0, [0, 1], start=0)
    new = chain(1, [0, 2], start=100 * DAY)
    gen = SequenceGenerator.fit(fit_data(old + new, 3),
                                SequenceConfig(window=1, half_life_days=100.0))
    w = gen.weights.toarray()
    # 0 -> 1 happened 100 days before the latest event: half the weight of 0 -> 2.
    assert w[0, 2] == pytest.approx(2 / 3) and w[0, 1] == pytest.approx(1 / 3)


def test_data_without_order_skips_the_generator_with_a_reason(caplog):
    with pytest.raises(GeneratorSkipped, match="no timestamps"):
        SequenceGenerator.fit(fit_data(WALKS, 6), SequenceConfig(ordered=False))
    assert SequenceGenerator.untimed == {"ordered": False}
    # training's way in: the reason kept for the manifest (and the fit's log)
    with caplog.at_level(logging.DEBUG):
        gen, why = fit_or_skip(SequenceGenerator, fit_data(WALKS, 6),
                               SequenceConfig(ordered=False))
    assert gen is None and "no order" in why
    assert "sequence generator skipped: the events have no timestamps" in caplog.text


def test_nothing_to_learn_from_single_item_users_skips_it():
    with pytest.raises(GeneratorSkipped, match="two different items"):
        SequenceGenerator.fit(fit_data([(0, 1, 0), (1, 2, 5)], 3), SequenceConfig())


def test_an_unknown_or_new_item_proposes_nothing():
    gen = SequenceGenerator.fit(fit_data(WALKS, 6), SequenceConfig())
    gen.add_item(6, "new")
    banned = np.zeros(7, bool)
    ids, _ = gen.propose(session([6]), 5, banned)
    assert ids.tolist() == []
    assert gen.affinity(session([6]), np.arange(7)) is not None  # all zero, not missing
    assert gen.propose(session([]), 5, banned)[0].tolist() == []


def test_save_and_load_round_trip(tmp_path):
    d = fit_data(WALKS, 6)
    gen = SequenceGenerator.fit(d, SequenceConfig(window=2))
    gen.save(tmp_path / "sequence")
    back = SequenceGenerator.load(tmp_path / "sequence", gen.config, d.catalog, None)
    np.testing.assert_array_equal(back.weights.toarray(), gen.weights.toarray())
    banned = np.zeros(6, bool)
    for a, b in zip(gen.propose(session([0, 1]), 5, banned),
                    back.propose(session([0, 1]), 5, banned), strict=True):
        np.testing.assert_array_equal(a, b)


def test_top_per_csr_row_keeps_the_largest_entries_of_each_row():
    import scipy.sparse as sp

    m = sp.csr_matrix(np.array([[0, 3, 1, 2], [5, 0, 0, 0], [1, 1, 1, 0]], np.float32))
    kept = top_per_csr_row(m, 2).toarray()
    np.testing.assert_array_equal(kept, [[0, 3, 0, 2], [5, 0, 0, 0], [1, 1, 0, 0]])


def test_top_per_csr_row_across_row_blocks_matches_a_per_row_reference():
    """More rows than one pruning block, and many ties: each row keeps its ``keep`` largest
    entries, ties to the lower column, as a plain per-row sort says."""
    import scipy.sparse as sp

    rng = np.random.default_rng(7)
    m = sp.random(700, 40, density=0.3, format="csr", random_state=rng, dtype=np.float32)
    m.data = np.round(m.data * 4).astype(np.float32) + 1  # values 1..5: ties everywhere
    kept = top_per_csr_row(m, 3).toarray()
    dense = m.toarray()
    for row, got in zip(dense, kept, strict=True):
        cols = np.flatnonzero(row)
        best = cols[np.lexsort((cols, -row[cols]))][:3]
        want = np.zeros_like(row)
        want[best] = row[best]
        np.testing.assert_array_equal(got, want)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 9), st.integers(0, 50)),
                min_size=2, max_size=60),
       st.lists(st.integers(0, 9), min_size=0, max_size=5),
       st.lists(st.integers(0, 9), max_size=4), st.integers(1, 4))
def test_proposals_are_unbanned_distinct_and_best_first(rows, recent, banned_items, window):
    gen, _ = fit_or_skip(SequenceGenerator, fit_data(rows, 10),
                         SequenceConfig(window=window, neighbours=3))
    if gen is None:  # every user had a single item, or repeated one
        return
    banned = np.zeros(10, bool)
    banned[banned_items] = True
    ids, scores = gen.propose(session(recent), 6, banned)
    assert len(ids) == len(set(ids.tolist())) <= 6
    assert not banned[ids].any()
    assert np.all(np.diff(scores) <= 0) and np.all(scores > 0)
    assert (gen.weights.getnnz(axis=1) <= 3).all()
