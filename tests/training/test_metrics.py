"""Ranking metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shortlist.training.metrics import ap_at_k, hit_at_k, ndcg_at_k, recall_at_k

RANKED = np.array([10, 20, 30, 40, 50, 60], dtype=np.int64)


def test_single_relevant_at_rank_three():
    rel = {30}
    assert ndcg_at_k(RANKED, rel, 10) == pytest.approx(1 / math.log2(4))  # = 0.5
    assert ndcg_at_k(RANKED, rel, 10) == pytest.approx(0.5)
    assert recall_at_k(RANKED, rel, 10) == 1.0
    assert hit_at_k(RANKED, rel, 10) == 1.0
    assert ap_at_k(RANKED, rel, 10) == pytest.approx(1 / 3)


def test_relevant_at_top_is_perfect():
    for metric in (ndcg_at_k, recall_at_k, hit_at_k, ap_at_k):
        assert metric(RANKED, {10}, 5) == pytest.approx(1.0), metric.__name__


def test_relevant_beyond_k_scores_zero():
    rel = {50}
    for metric in (ndcg_at_k, recall_at_k, hit_at_k, ap_at_k):
        assert metric(RANKED, rel, 4) == 0.0, metric.__name__
    assert ndcg_at_k(RANKED, rel, 5) == pytest.approx(1 / math.log2(6))


def test_two_relevant_hand_computed():
    rel = {10, 30}  # ranks 1 and 3
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at_k(RANKED, rel, 10) == pytest.approx((1 + 0.5) / ideal)
    assert recall_at_k(RANKED, rel, 10) == 1.0
    assert ap_at_k(RANKED, rel, 10) == pytest.approx((1 / 1 + 2 / 3) / 2)


def test_partial_recall_and_missing_items():
    rel = {20, 60, 999}  # ranks 2 and 6, one never retrieved
    assert recall_at_k(RANKED, rel, 3) == pytest.approx(1 / 3)
    assert recall_at_k(RANKED, rel, 10) == pytest.approx(2 / 3)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(RANKED, rel, 10) == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(7)) / ideal)
    assert ap_at_k(RANKED, rel, 10) == pytest.approx((1 / 2 + 2 / 6) / 3)


def test_ideal_truncated_at_k():
    # more relevant items than k: the ideal list has only k gains; ap divides by k
    rel = {10, 20, 70, 80}
    assert ndcg_at_k(RANKED, rel, 2) == pytest.approx(1.0)
    assert ap_at_k(RANKED, rel, 2) == pytest.approx(1.0)
    assert recall_at_k(RANKED, rel, 2) == pytest.approx(0.5)


def test_empty_cases():
    for metric in (ndcg_at_k, recall_at_k, hit_at_k, ap_at_k):
        assert metric(RANKED, set(), 10) == 0.0
        assert metric(np.zeros(0, np.int64), {1}, 10) == 0.0
    assert isinstance(ndcg_at_k(RANKED, {30}, 10), float)
