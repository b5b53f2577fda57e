"""DPP and calibration re-ranking: pure functions with known answers and invariants."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shortlist.ranking.calibration import calibrate
from shortlist.ranking.dpp import dpp


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_dpp_without_diversity_is_relevance_order():
    rel = np.array([0.1, 0.9, 0.5, 0.7])
    assert dpp(rel, np.eye(4), 3, 1.0).tolist() == [1, 3, 2]


def test_dpp_prefers_a_different_direction_over_a_near_duplicate():
    # items 0 and 1 point the same way, item 2 elsewhere; 1 is slightly more relevant than 2
    v = unit(np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]]))
    rel = np.array([1.0, 0.9, 0.85])
    assert dpp(rel, v, 2, 1.0).tolist() == [0, 1]
    assert dpp(rel, v, 2, 0.5).tolist() == [0, 2]


def test_dpp_fills_with_relevance_when_the_kernel_runs_out_of_rank():
    v = np.tile([[1.0, 0.0]], (5, 1))  # one direction only
    rel = np.array([0.2, 0.8, 0.4, 0.6, 0.1])
    order = dpp(rel, v, 4, 0.5)
    assert order[0] == 1 and sorted(order.tolist()) == sorted([1, 3, 2, 0])
    assert order[1:].tolist() == [3, 2, 0]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), k=st.integers(0, 12), theta=st.floats(0.0, 1.0),
       seed=st.integers(0, 1000))
def test_dpp_returns_k_distinct_items(n, k, theta, seed):
    rng = np.random.default_rng(seed)
    order = dpp(rng.random(n), unit(rng.normal(size=(n, 4))), k, theta)
    assert len(order) == min(k, n) and len(set(order.tolist())) == len(order)
    assert all(0 <= i < n for i in order.tolist())


def test_calibration_without_weight_is_relevance_order():
    rel = np.array([0.3, 0.9, 0.1])
    cats = np.eye(3)
    assert calibrate(rel, cats, np.array([1.0, 0, 0]), 2, 0.0).tolist() == [1, 0]


def test_calibration_follows_the_users_mix():
    # six items, categories A (0-2) and B (3-5); B items are more relevant; the user is 2/3 A
    cats = np.array([[1, 0]] * 3 + [[0, 1]] * 3, np.float64)
    rel = np.array([0.5, 0.4, 0.3, 0.9, 0.8, 0.7])
    plain = calibrate(rel, cats, np.array([2.0, 1.0]), 3, 0.0)
    assert cats[plain].sum(axis=0).tolist() == [0, 3]
    calibrated = calibrate(rel, cats, np.array([2.0, 1.0]), 3, 0.9)
    assert cats[calibrated].sum(axis=0).tolist() == [2, 1]
    # within a category, the more relevant item first
    assert calibrated.tolist().index(0) < calibrated.tolist().index(1)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 25), k=st.integers(0, 10), lam=st.floats(0.0, 1.0),
       seed=st.integers(0, 1000))
def test_calibration_returns_k_distinct_items(n, k, lam, seed):
    rng = np.random.default_rng(seed)
    cats = (rng.random((n, 4)) < 0.4).astype(np.float64)
    cats /= np.maximum(cats.sum(axis=1, keepdims=True), 1)
    order = calibrate(rng.random(n), cats, rng.random(4), k, lam)
    assert len(order) == min(k, n) and len(set(order.tolist())) == len(order)
