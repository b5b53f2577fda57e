"""Ranking's model loading: the ranker is compiled when the settings ask, never silently not."""

from __future__ import annotations

import logging
import shutil

import numpy as np

from shortlist.ranking import compiled
from shortlist.ranking.compiled import probe_matrix
from shortlist.ranking.ranker import LambdaRanker
from shortlist.ranking.server import compile_ranker
from shortlist.ranking.settings import RankingSettings
from tests.ranking.test_ranker import NAMES, make_groups


def fit(seed: int, rounds: int) -> LambdaRanker:
    x, y, groups = make_groups(60, seed=seed)
    return LambdaRanker().fit(x, y, groups, NAMES, num_boost_round=rounds)


def test_compiled_then_cached_then_off(tmp_path):
    settings = RankingSettings(compile_cache=str(tmp_path / "cache"))
    a = fit(1, 8)
    assert compile_ranker(settings, a, "v1") == "compiled" and a.compiled
    again = LambdaRanker(a.booster)
    assert compile_ranker(settings, again, "v1") == "cached" and again.compiled
    x = probe_matrix(a.booster, rows=50)
    np.testing.assert_array_equal(again.predict(x), a.booster.predict(x).astype(np.float32))
    off = LambdaRanker(a.booster)
    assert compile_ranker(RankingSettings(compile_ranker=False), off, "v1") == "off"
    assert not off.compiled
    memory = LambdaRanker(a.booster)
    assert compile_ranker(RankingSettings(compile_cache=""), memory, "v1") == "compiled"


def test_a_failed_compile_serves_lightgbm_with_a_warning(tmp_path, caplog):
    cache = tmp_path / "cache"
    settings = RankingSettings(compile_cache=str(cache))
    a, b = fit(1, 8), fit(2, 5)
    compile_ranker(settings, a, "v1")
    (obj,) = cache.iterdir()
    shutil.copy(obj, cache / f"ranker-{compiled.cache_key(b.booster.model_to_string())}.o")
    with caplog.at_level(logging.WARNING, logger="shortlist.ranking.server"):
        assert compile_ranker(settings, b, "v2") == "failed"
    assert not b.compiled
    assert "served by LightGBM" in caplog.text and "differ" in caplog.text
    x = probe_matrix(b.booster, rows=50)
    np.testing.assert_array_equal(b.predict(x), b.booster.predict(x).astype(np.float32))
