"""Explanations over the session's trained ranker: contributions are LightGBM's own and add
up to the score; the closest recent item is the most similar one."""

from __future__ import annotations

import numpy as np
import pytest

from shortlist.common import artifacts
from shortlist.ranking.bundle import RankingModels
from shortlist.ranking.explain import FIXED, closest_items, contributions, describe
from shortlist.ranking.features import ITEM_FEATURES, TIME_FEATURES, USER_FEATURES, FeatureSpec


def test_every_feature_a_spec_can_derive_is_described_in_words():
    assert set(FIXED) >= {*ITEM_FEATURES, *TIME_FEATURES, *USER_FEATURES,
                          "n_sources", "retrieval_rank", "retrieval_score"}
    for time in (True, False):
        spec = FeatureSpec(("als", "sequence"), ("als",), time, events=("purchase",))
        for name in spec.names:
            assert "_" not in describe(name), name  # every one is in words, none left raw
    assert describe("als_score") == "als score"
    assert describe("events_purchase") == "how often the item got purchase events"
    assert describe("content_recent_sim") == "content similarity to the user's latest item"


@pytest.fixture(scope="module")
def ranking(trained) -> RankingModels:
    return RankingModels.load(artifacts.resolve(trained))


def test_contributions_are_the_largest_of_lightgbms_and_add_up_to_the_score(ranking):
    booster = ranking.ranker.booster
    names = ranking.config.features.names
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, len(names))).astype(np.float32)
    x[:, ::4] = np.nan  # missing values, as features often are
    full = booster.predict(x, pred_contrib=True)
    np.testing.assert_allclose(full.sum(axis=1), booster.predict(x), rtol=1e-5, atol=1e-6)
    top = contributions(booster, x, names)
    for row, explained in zip(full, top, strict=True):
        assert 0 < len(explained) <= 3
        values = [v for _, _, v in explained]
        assert values == [row[names.index(n)] for n, _, _ in explained]
        assert abs(values[-1]) >= np.sort(np.abs(row[:-1]))[-3] - 1e-12
        assert all(text == describe(n) for n, text, _ in explained)


def test_the_closest_recent_item_is_the_most_similar_one():
    space = np.array([[1, 0], [0, 1], [0.8, 0.6], [-1, 0]], np.float32)
    got = closest_items(np.array([2, 3, 0]), np.array([0, 1]), space)
    assert got.tolist() == [0, -1, 0]  # item 3 resembles neither (no positive similarity)
    assert closest_items(np.array([2]), np.zeros(0, np.int64), space).tolist() == [-1]
    assert closest_items(np.array([2]), np.array([1]), None).tolist() == [-1]
