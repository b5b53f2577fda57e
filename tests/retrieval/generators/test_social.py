"""The social generator: friends' items on a tiny graph, the cold-start rung, and the contract."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from shortlist.common.catalog import ItemCatalog
from shortlist.retrieval.generators import FitData, GeneratorSkipped, SocialGenerator, UserState
from shortlist.retrieval.generators.social import SocialConfig
from shortlist.training.split import Events

N_ITEMS = 6
DAY = 86_400


def fit_data(events, ties, n_users: int = 5) -> FitData:
    """``events``: (user, item, timestamp); ``ties``: (user, friend, weight)."""
    users = np.array([u for u, _, _ in events], np.int64)
    ev = Events(users, np.array([i for _, i, _ in events], np.int64),
                np.array([t for _, _, t in events], np.int64), np.ones(len(events), np.float32))
    friends = None
    if ties is not None:
        friends = sp.csr_matrix(([w for _, _, w in ties], ([a for a, _, _ in ties],
                                                           [b for _, b, _ in ties])),
                                shape=(n_users, n_users), dtype=np.float32)
    catalog = ItemCatalog([f"i{i}" for i in range(N_ITEMS)],
                          [f"t{i}" for i in range(N_ITEMS)], [[] for _ in range(N_ITEMS)])
    return FitData(ev, n_users, catalog, int(ev.timestamps.max()), friends=friends)


def user(index: int, items=()) -> UserState:
    items = np.asarray(items, np.int64)
    return UserState.of(index, items, np.zeros(len(items), np.int64),
                        np.ones(len(items), np.float32), np.zeros(0, np.int64), 0)


# User 0 follows 1 (strongly) and 2; user 4 has no events at all but follows 3.
EVENTS = [(1, 1, 0), (1, 2, 0), (2, 3, 0), (3, 5, 0), (0, 0, 0)]
TIES = [(0, 1, 3.0), (0, 2, 1.0), (4, 3, 1.0)]


def test_friends_items_by_tie_strength():
    gen = SocialGenerator.fit(fit_data(EVENTS, TIES), SocialConfig(symmetric=False))
    banned = np.zeros(N_ITEMS, bool)
    banned[0] = True
    ids, scores = gen.propose(user(0, [0]), 5, banned)
    # ties normalised per user: 1 weighs 3/4, 2 weighs 1/4
    assert ids.tolist() == [1, 2, 3]
    np.testing.assert_allclose(scores, [0.75, 0.75, 0.25])
    np.testing.assert_allclose(gen.affinity(user(0, [0]), np.arange(N_ITEMS)),
                               [0, 0.75, 0.75, 0.25, 0, 0])


def test_a_user_known_only_by_their_ties_gets_their_friends_items():
    gen = SocialGenerator.fit(fit_data(EVENTS, TIES), SocialConfig(symmetric=False))
    ids, _ = gen.propose(user(4), 5, np.zeros(N_ITEMS, bool))
    assert ids.tolist() == [5]
    assert gen.serves_new_users
    # a stranger (no index) or a user beyond the graph: nothing, not an error
    assert gen.propose(user(-1), 5, np.zeros(N_ITEMS, bool))[0].tolist() == []
    assert gen.propose(user(9), 5, np.zeros(N_ITEMS, bool))[0].tolist() == []


def test_symmetric_ties_read_following_as_friendship():
    gen = SocialGenerator.fit(fit_data(EVENTS, TIES), SocialConfig(symmetric=True))
    ids, _ = gen.propose(user(3), 5, np.zeros(N_ITEMS, bool))
    assert ids.tolist() == []  # user 4, the one who follows 3, has no events
    ids, _ = gen.propose(user(1), 5, np.zeros(N_ITEMS, bool))
    assert ids.tolist() == [0]  # 0 follows 1: taken both ways, 1 sees 0's item


def test_recent_events_of_friends_count_more_with_a_half_life():
    events = [(1, 1, 0), (1, 2, 100 * DAY), (0, 0, 100 * DAY)]
    gen = SocialGenerator.fit(fit_data(events, [(0, 1, 1.0)]),
                              SocialConfig(half_life_days=100.0, symmetric=False))
    ids, scores = gen.propose(user(0), 5, np.zeros(N_ITEMS, bool))
    assert ids.tolist() == [2, 1]
    np.testing.assert_allclose(scores, [1.0, 0.5], rtol=1e-6)


def test_without_a_graph_it_is_skipped_with_the_reason():
    with pytest.raises(GeneratorSkipped, match="no social graph"):
        SocialGenerator.fit(fit_data(EVENTS, None), SocialConfig())
    with pytest.raises(GeneratorSkipped, match="no tie"):
        SocialGenerator.fit(fit_data(EVENTS, [(2, 2, 1.0)]), SocialConfig())


def test_save_load_and_new_items(tmp_path):
    d = fit_data(EVENTS, TIES)
    gen = SocialGenerator.fit(d, SocialConfig())
    gen.save(tmp_path / "s")
    back = SocialGenerator.load(tmp_path / "s", gen.config, d.catalog, None)
    banned = np.zeros(N_ITEMS, bool)
    for a, b in zip(gen.propose(user(0), 5, banned), back.propose(user(0), 5, banned),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    back.add_item(N_ITEMS + 2, "new")
    ids, _ = back.propose(user(0), 5, np.zeros(N_ITEMS + 3, bool))
    assert set(ids.tolist()) <= set(range(N_ITEMS))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4),
                          st.floats(0.1, 5.0)), min_size=1, max_size=12),
       st.lists(st.integers(0, N_ITEMS - 1), max_size=N_ITEMS), st.integers(0, 4),
       st.integers(1, N_ITEMS))
def test_proposals_are_unbanned_distinct_and_best_first(ties, banned_items, who, k):
    try:
        gen = SocialGenerator.fit(fit_data(EVENTS, ties), SocialConfig())
    except GeneratorSkipped:  # only self-ties
        return
    banned = np.zeros(N_ITEMS, bool)
    banned[banned_items] = True
    ids, scores = gen.propose(user(who), k, banned)
    assert len(ids) == len(set(ids.tolist())) <= k
    assert not banned[ids].any() and np.all(np.diff(scores) <= 0)
    np.testing.assert_allclose(np.asarray(gen.ties.sum(axis=1)).ravel()[
        np.diff(gen.ties.indptr) > 0], 1.0, rtol=1e-5)


def test_a_user_known_only_by_their_ties_is_served_their_friends_items(tmp_path):
    """Fitted and served for real: a social.csv user with no event is a known user, on the
    `new` rung, and gets what their friends (all of one taste) engaged with."""
    from shortlist.common.candidates import SEGMENT_NEW
    from shortlist.retrieval.bundle import RetrievalModels
    from shortlist.retrieval.retriever import RetrieveQuery, Retriever
    from shortlist.training.fit import fit
    from tests.conftest import GENRES, small_params, write_synthetic

    data = write_synthetic(tmp_path / "data", n_users=60, n_items=90, per_user=12, seed=5)
    fans = [f"u{u}" for u in range(60) if u % len(GENRES) == 2][:6]  # all prefer GENRES[2]
    with open(data / "social.csv", "w") as fh:
        fh.write("user_id,friend_id\n" + "".join(f"newbie,{f}\n" for f in fans)
                 + "u0,u6\nu1,u7\n")
    version = fit(str(data), tmp_path / "out", small_params(), progress=False)
    models = RetrievalModels.load(version)
    assert "social" in models.generators and models.users.index("newbie") >= 0
    got = Retriever(models, "v", 2000).retrieve(RetrieveQuery(user_id="newbie", k=10))
    cands = got.candidates
    assert cands.segment == SEGMENT_NEW
    col = list(cands.generators).index("social")
    proposed = cands.ranks[:, col] > 0
    top = cands.items[proposed][np.argsort(cands.ranks[proposed, col])][:10]
    assert len(top) == 10
    # what several friends share comes first: their taste, not one friend's odd pick
    genres = [models.catalog.categories[i] for i in top.tolist()]
    assert np.mean([GENRES[2] in g for g in genres]) >= 0.8, genres
