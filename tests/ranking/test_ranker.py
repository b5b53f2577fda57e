"""LambdaRanker on a synthetic ranking problem with a known signal."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from shortlist.ranking.ranker import LambdaRanker
from shortlist.training.metrics import ndcg_at_k

NAMES = ["signal", "noise_a", "noise_b", "noise_c"]
GROUP = 20


def make_groups(n_groups: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groups of 20 candidates, 2 relevant each; feature 0 is the label plus noise."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n_groups, GROUP), np.float32)
    for g in range(n_groups):
        y[g, rng.choice(GROUP, 2, replace=False)] = 1.0
    y = y.ravel()
    x = rng.normal(size=(len(y), len(NAMES))).astype(np.float32)
    x[:, 0] = y + rng.normal(scale=0.5, size=len(y))
    return x, y, np.full(n_groups, GROUP)


def mean_ndcg(scores: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    out = []
    for g in range(len(y) // GROUP):
        s, lab = scores[g * GROUP:(g + 1) * GROUP], y[g * GROUP:(g + 1) * GROUP]
        ranked = np.argsort(-s, kind="stable")
        out.append(ndcg_at_k(ranked, set(np.flatnonzero(lab).tolist()), k))
    return float(np.mean(out))


@pytest.fixture(scope="module")
def data():
    return make_groups(150, seed=1), make_groups(60, seed=2)


@pytest.fixture(scope="module")
def ranker(data) -> LambdaRanker:
    (x, y, groups), _ = data
    return LambdaRanker().fit(x, y, groups, NAMES, num_boost_round=60)


def test_learns_the_signal(ranker, data):
    _, (x_test, y_test, _) = data
    learned = mean_ndcg(ranker.predict(x_test), y_test)
    random = mean_ndcg(np.random.default_rng(0).random(len(y_test)), y_test)
    oracle = mean_ndcg(x_test[:, 0], y_test)  # the raw signal itself
    assert random < 0.5
    assert learned > random + 0.3
    assert learned > 0.9 * oracle
    importance = ranker.feature_importance()
    assert set(importance) == set(NAMES)
    assert max(importance, key=importance.get) == "signal"


def test_early_stopping_with_validation(data):
    (x, y, groups), (xv, yv, gv) = data
    r = LambdaRanker().fit(x, y, groups, NAMES, valid=(xv, yv, gv), num_boost_round=500)
    assert 0 < r.booster.num_trees() < 500  # stopped early
    assert r.booster.best_iteration > 0


def test_save_load_round_trip(ranker, data, tmp_path):
    _, (x_test, _, _) = data
    path = tmp_path / "ranker.txt"
    ranker.save(path)
    text = path.read_text()
    assert text.startswith("tree")  # LightGBM's text model format, not a pickle
    assert "feature_names=signal noise_a noise_b noise_c" in text
    loaded = LambdaRanker.load(path)
    assert loaded.booster.feature_name() == NAMES
    np.testing.assert_array_equal(loaded.predict(x_test), ranker.predict(x_test))
    # and plain LightGBM reads it too
    raw = lgb.Booster(model_file=str(path)).predict(x_test, num_threads=1)
    np.testing.assert_array_equal(raw.astype(np.float32), ranker.predict(x_test))


def test_predict_edge_cases(ranker):
    out = ranker.predict(np.zeros((0, len(NAMES)), np.float32))
    assert out.shape == (0,) and out.dtype == np.float32
    assert ranker.predict(np.full((1, len(NAMES)), np.nan, np.float32)).shape == (1,)
    with pytest.raises(RuntimeError, match="not fitted"):
        LambdaRanker().predict(np.zeros((1, len(NAMES)), np.float32))


def test_training_is_deterministic(data):
    (x, y, groups), (x_test, _, _) = data
    a = LambdaRanker().fit(x, y, groups, NAMES, num_boost_round=20)
    b = LambdaRanker().fit(x, y, groups, NAMES, num_boost_round=20)
    np.testing.assert_array_equal(a.predict(x_test), b.predict(x_test))
