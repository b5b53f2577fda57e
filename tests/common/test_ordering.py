"""time_order: users, then time, ties by the pair hash; the same order for any row order."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from shortlist.common.ordering import TIE_SEED, pair_hash, time_order

ROWS = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 40), st.integers(0, 3)),
                max_size=60, unique_by=lambda r: (r[0], r[1]))


@given(ROWS, st.randoms(use_true_random=False))
def test_sorted_by_user_then_time_then_hash_whatever_the_row_order(rows, rnd):
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    out = []
    for data in (rows, shuffled):
        u, i, t = (np.array([r[k] for r in data], dtype=np.int64) for k in range(3))
        order = time_order(u, i, t)
        assert sorted(order.tolist()) == list(range(len(data)))
        out.append(list(zip(u[order].tolist(), i[order].tolist(), t[order].tolist(),
                            strict=True)))
    assert out[0] == out[1]
    keys = [(user, stamp, int(pair_hash(user, item, TIE_SEED)))
            for user, item, stamp in out[0]]
    assert keys == sorted(keys)


def test_the_hash_is_not_the_catalog_order():
    """Of 1,000 users' two tied items, the higher index comes later about half the time."""
    users = np.repeat(np.arange(1000), 2)
    items = np.tile([3, 7], 1000)
    order = time_order(users, items, np.zeros(2000, dtype=np.int64))
    later = items[order][1::2]
    assert 0.45 < (later == 7).mean() < 0.55
