"""The generator protocol's shared helpers: the finer tuning round on a log scale."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from shortlist.retrieval.generators.base import refine_log_scale
from shortlist.retrieval.generators.itemitem import EaseConfig, EaseGenerator

COARSE = [30.0, 100.0, 300.0, 1000.0, 3000.0]


def grid(values, **other):
    return [{"lam": v, **other} for v in values]


def lams(rows):
    return [row["lam"] for row in rows]


def test_half_steps_around_an_inner_best_keep_the_other_values():
    rows = refine_log_scale({"lam": 300.0, "neighbours": 200}, grid(COARSE, neighbours=200),
                            "lam")
    assert lams(rows) == [173.0, 548.0]  # sqrt(100 * 300), sqrt(300 * 1000), 3 digits
    assert all(row["neighbours"] == 200 for row in rows)


def test_a_best_at_the_edge_also_steps_past_it():
    assert lams(refine_log_scale({"lam": 30.0}, grid(COARSE), "lam")) == [9.0, 16.4, 54.8]
    assert lams(refine_log_scale({"lam": 3000.0}, grid(COARSE), "lam")) == [
        1730.0, 5200.0, 9000.0]


def test_nothing_to_refine_without_a_grid_or_a_value():
    assert refine_log_scale({"lam": 30.0}, grid([30.0]), "lam") == []
    assert refine_log_scale({"neighbours": 50}, grid(COARSE), "lam") == []
    assert refine_log_scale({"lam": 50.0}, grid(COARSE), "lam") == []  # not a tried value


def test_a_second_round_narrows_between_the_values_of_the_first():
    tried = grid(COARSE + [173.0, 548.0])
    assert lams(refine_log_scale({"lam": 300.0}, tried, "lam")) == [228.0, 405.0]


def test_ease_refines_lambda_around_the_best_of_its_own_grid():
    tried = EaseGenerator.tuning_grid(EaseConfig())
    best = {"lam": 100.0, "confidence": "log1p", "neighbours": 200}
    rows = EaseGenerator.refine_grid(best, tried)
    assert lams(rows) == [54.8, 173.0]
    assert all(row["confidence"] == "log1p" and row["neighbours"] == 200 for row in rows)


@given(st.lists(st.floats(0.01, 1e5), min_size=2, max_size=8, unique=True),
       st.integers(0, 7))
def test_new_values_are_new_and_lie_between_the_neighbours_or_one_step_out(values, pick):
    values = sorted(values)
    if len({float(f"{v:.3g}") for v in values}) < len(values):
        return  # values that round alike: the property is about distinct grids
    b = values[pick % len(values)]
    rows = refine_log_scale({"lam": b}, grid(values), "lam")
    new = lams(rows)
    assert new == sorted(set(new)) and not set(new) & set(values)
    i = values.index(b)
    lo = values[i - 1] if i > 0 else b * b / values[1]
    hi = values[i + 1] if i < len(values) - 1 else b * b / values[-2]
    for v in new:
        assert lo * (1 - 1e-2) <= v <= hi * (1 + 1e-2)
    assert len(new) <= 3
    assert all(math.isfinite(v) and v > 0 for v in new)


def test_every_served_generator_proposes_for_many_users_as_for_each(trained):
    """The block path training scores with (``propose_many``: one product per block of users
    for the vector generators) gives each user what ``propose`` gives, on a real artifact."""
    import numpy as np

    from shortlist.common.artifacts import resolve
    from shortlist.retrieval.bundle import RetrievalModels, banned_mask

    models = RetrievalModels.load(resolve(trained))
    users = list(range(0, len(models.users), 7))
    states = [models.user_state(u) for u in users]
    banned = [banned_mask(len(models.catalog), s.items) for s in states]
    for name, gen in models.generators.items():
        many = gen.propose_many([models.user_state(u) for u in users], 20, banned)
        for state, b, (ids, scores) in zip(states, banned, many, strict=True):
            want_ids, want_scores = gen.propose(state, 20, b)
            assert np.array_equal(ids, want_ids), name
            np.testing.assert_allclose(scores, want_scores, rtol=1e-5, err_msg=name)
