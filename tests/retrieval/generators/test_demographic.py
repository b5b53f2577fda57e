"""The demographic generator: segment popularity on a tiny planted table, and its contract."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shortlist.common.attributes import UserAttributes
from shortlist.common.catalog import ItemCatalog
from shortlist.common.vocab import Vocabulary
from shortlist.retrieval.generators import DemographicGenerator, FitData, GeneratorSkipped
from shortlist.retrieval.generators.base import UserState
from shortlist.retrieval.generators.demographic import (
    ColumnReader,
    DemographicConfig,
    read_column,
)
from shortlist.training.split import Events

N_ITEMS = 8


def fit_data(pairs, table: dict[int, list[str]] | None, columns=("job", "age")) -> FitData:
    users = np.array([u for u, _ in pairs], np.int64)
    items = np.array([i for _, i in pairs], np.int64)
    ev = Events(users, items, np.zeros(len(pairs), np.int64), np.ones(len(pairs), np.float32))
    n_users = int(users.max()) + 1
    catalog = ItemCatalog([f"i{i}" for i in range(N_ITEMS)],
                          [f"t{i}" for i in range(N_ITEMS)], [[] for _ in range(N_ITEMS)])
    attrs = None
    if table is not None:
        vocab = Vocabulary([f"u{u}" for u in range(n_users)])
        ids = [f"u{u}" for u in table]
        attrs = UserAttributes.align(ids, columns, list(table.values()), vocab)
    return FitData(ev, n_users, catalog, 0, attributes=attrs)


# Students (users 0-9) all take item 1, nurses (10-19) item 2; everyone takes item 0, the most
# popular overall. Ages are spread so the column reads as a number.
PAIRS = ([(u, 0) for u in range(20)] + [(u, 1) for u in range(10)]
         + [(u, 2) for u in range(10, 20)] + [(u, 3) for u in range(0, 20, 4)])
TABLE = {u: ["student" if u < 10 else "nurse", str(18 + 3 * u)] for u in range(20)}


def new_user(**attributes) -> UserState:
    empty = np.zeros(0, np.int64)
    return UserState.of(-1, empty, empty, np.zeros(0, np.float32), empty, 0,
                        attributes=attributes)


def test_a_new_user_gets_what_is_popular_among_users_like_them():
    gen = DemographicGenerator.fit(fit_data(PAIRS, TABLE), DemographicConfig(smoothing=1.0))
    banned = np.zeros(N_ITEMS, bool)
    student, _ = gen.propose(new_user(job="student"), 3, banned)
    nurse, _ = gen.propose(new_user(job="nurse"), 3, banned)
    assert student[:2].tolist() == [0, 1] and 2 not in student[:2]
    assert nurse[:2].tolist() == [0, 2] and 1 not in nurse[:2]
    # Nothing known: no proposal (trending speaks for the crowd).
    assert gen.propose(new_user(), 3, banned)[0].tolist() == []
    assert gen.affinity(new_user(), np.arange(N_ITEMS)) is None


def test_smoothing_pulls_a_segment_toward_the_global_popularity():
    data = fit_data(PAIRS, TABLE)
    light = DemographicGenerator.fit(data, DemographicConfig(smoothing=1.0))
    heavy = DemographicGenerator.fit(data, DemographicConfig(smoothing=1e6))
    items = np.array([1, 2])
    # one request each: a user state memoises its scores for one request
    lift_light = np.diff(light.affinity(new_user(job="student"), items))[0]
    lift_heavy = np.diff(heavy.affinity(new_user(job="student"), items))[0]
    # item 2 (nurses') against item 1 (students'): far behind for a student with little
    # smoothing, nearly level (as globally) with a lot
    assert lift_light < -1.0 and abs(lift_heavy) < 0.01


def test_the_request_overrides_what_training_stored_and_unknowns_are_ignored():
    gen = DemographicGenerator.fit(fit_data(PAIRS, TABLE), DemographicConfig(smoothing=1.0))
    banned = np.zeros(N_ITEMS, bool)
    stored_student = UserState.of(3, np.zeros(0, np.int64), np.zeros(0, np.int64),
                                  np.zeros(0, np.float32), np.zeros(0, np.int64), 0)
    # user 3 is stored as a 27-year-old student
    assert set(gen.propose(stored_student, 2, banned)[0].tolist()) == {0, 1}
    stored_student.attributes = {"job": "nurse", "age": "70"}
    stored_student.memo.clear()
    assert set(gen.propose(stored_student, 2, banned)[0].tolist()) == {0, 2}
    odd = new_user(job="astronaut", shoe="42", age="not a number")
    assert gen.propose(odd, 3, banned)[0].tolist() == []  # nothing it can read


def test_numbers_are_cut_into_quantile_bands_and_rare_categories_are_unknown():
    ages = np.array([str(a) for a in range(20, 70)])
    spec = read_column(ages, buckets=5, min_users=5)
    assert spec["kind"] == "number" and len(spec["edges"]) == 4
    reader = ColumnReader(spec)
    assert reader.code("20") == 0 and reader.code("69") == 4 and reader.code("") == -1
    assert reader.code("inf") == -1 and reader.code("abc") == -1
    jobs = np.array(["a"] * 6 + ["b"] * 2 + [""] * 3)
    spec = read_column(jobs, buckets=5, min_users=5)
    assert spec == {"kind": "category", "values": ["a"]}
    assert ColumnReader(spec).code("b") == -1
    # few distinct numbers (a 1-5 scale) stay categories
    assert read_column(np.array(list("1234512345")), 5, 1)["kind"] == "category"


def test_without_attributes_it_is_skipped_with_the_reason():
    with pytest.raises(GeneratorSkipped, match="no user attributes"):
        DemographicGenerator.fit(fit_data(PAIRS, None), DemographicConfig())
    with pytest.raises(GeneratorSkipped, match="enough users"):
        DemographicGenerator.fit(fit_data(PAIRS, {0: ["x", ""]}), DemographicConfig())


def test_save_load_and_new_items(tmp_path):
    data = fit_data(PAIRS, TABLE)
    gen = DemographicGenerator.fit(data, DemographicConfig(smoothing=1.0))
    gen.save(tmp_path / "d")
    back = DemographicGenerator.load(tmp_path / "d", gen.config, data.catalog, None)
    user = new_user(job="nurse", age="40")
    np.testing.assert_array_equal(back.affinity(user, np.arange(N_ITEMS)),
                                  gen.affinity(new_user(job="nurse", age="40"),
                                               np.arange(N_ITEMS)))
    back.add_item(N_ITEMS + 1, "new")
    scores = back.affinity(new_user(job="nurse"), np.arange(N_ITEMS + 2))
    assert scores[-1] == scores[-2] <= scores[:N_ITEMS].min()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, N_ITEMS - 1), min_size=1, max_size=N_ITEMS),
       st.sampled_from(["student", "nurse", "", "x"]), st.integers(1, N_ITEMS))
def test_proposals_are_unbanned_distinct_and_best_first(banned_items, job, k):
    gen = DemographicGenerator.fit(fit_data(PAIRS, TABLE), DemographicConfig(smoothing=5.0))
    banned = np.zeros(N_ITEMS, bool)
    banned[banned_items] = True
    ids, scores = gen.propose(new_user(job=job), k, banned)
    assert len(ids) == len(set(ids.tolist())) <= k
    assert not banned[ids].any()
    assert np.all(np.diff(scores) <= 0)
