"""The compiled ranker (lleaves) scores exactly as LightGBM does, and its cache is careful."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shortlist.ranking import compiled
from shortlist.ranking.compiled import CompileError, compile_booster, probe_matrix
from shortlist.ranking.ranker import LambdaRanker
from tests.ranking.test_ranker import NAMES, make_groups


@pytest.fixture(scope="module")
def rankers() -> tuple[LambdaRanker, LambdaRanker]:
    """Two models of the same shape with different trees; NaNs in training give the trees
    missing-value branches to take."""
    x, y, groups = make_groups(120, seed=3)
    x[np.random.default_rng(3).random(x.shape) < 0.05] = np.nan
    a = LambdaRanker().fit(x, y, groups, NAMES, num_boost_round=25)
    b = LambdaRanker().fit(x[:, ::-1].copy(), y, groups, NAMES, num_boost_round=10)
    return a, b


@pytest.fixture(scope="module")
def compiled_a(rankers, tmp_path_factory) -> LambdaRanker:
    a = LambdaRanker(rankers[0].booster)
    a.compile(tmp_path_factory.mktemp("cache"))
    return a


def test_scores_equal_lightgbm_on_every_branch(rankers, compiled_a):
    a = rankers[0]
    # Every threshold, each side of it, missing values, and LightGBM's "zero" band.
    x = probe_matrix(a.booster, rows=2000, seed=7)
    x[:50, 0] = np.float32(1e-35)
    x[50:100, 1] = -1e-36
    assert compiled_a.compiled and not a.compiled
    np.testing.assert_array_equal(compiled_a.predict(x), a.predict(x))
    probe = np.clip(probe_matrix(a.booster, rows=300, seed=8), -1e30, 1e30)
    x32 = probe.astype(np.float32)  # serving's dtype
    np.testing.assert_array_equal(compiled_a.predict(x32), a.predict(x32))
    assert compiled_a.predict(np.zeros((0, len(NAMES)), np.float32)).shape == (0,)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 40), st.just(len(NAMES))),
                  elements=st.floats(-5, 5, width=32) | st.just(float("nan"))))
def test_any_rows_score_equal(rankers, compiled_a, x):
    np.testing.assert_allclose(compiled_a.predict(x), rankers[0].predict(x), rtol=0, atol=1e-6)


def test_cache_is_keyed_by_model_and_reused(rankers, tmp_path):
    a, b = rankers
    cache = tmp_path / "cache"
    _, cached = compile_booster(a.booster, cache)
    assert not cached
    assert len(list(cache.iterdir())) == 1
    assert oct(cache.stat().st_mode & 0o777) == "0o700"  # created private
    predict, cached = compile_booster(a.booster, cache)
    assert cached
    x = probe_matrix(a.booster, rows=200, seed=1)
    np.testing.assert_array_equal(predict(x), a.booster.predict(x))
    _, cached = compile_booster(b.booster, cache)  # another model: its own entry
    assert not cached and len(list(cache.iterdir())) == 2


def test_a_wrong_cached_object_is_refused(rankers, tmp_path):
    """An object file that is not this model's (stale, corrupted or planted) never scores."""
    a, b = rankers
    cache = tmp_path / "cache"
    compile_booster(a.booster, cache)
    (obj_a,) = cache.iterdir()
    key_b = cache / f"ranker-{compiled.cache_key(b.booster.model_to_string())}.o"
    shutil.copy(obj_a, key_b)
    with pytest.raises(CompileError, match="differ from LightGBM"):
        compile_booster(b.booster, cache)


def test_a_shared_cache_directory_is_not_used(rankers, tmp_path):
    """Native code is loaded only from a directory no one else can write to."""
    cache = tmp_path / "shared"
    cache.mkdir()
    os.chmod(cache, 0o777)
    predict, cached = compile_booster(rankers[0].booster, cache)
    assert not cached and list(cache.iterdir()) == []  # compiled in memory, nothing written
    x = probe_matrix(rankers[0].booster, rows=100, seed=2)
    np.testing.assert_array_equal(predict(x), rankers[0].booster.predict(x))
    assert not compiled.private_dir(tmp_path / "missing")


def test_an_unusable_cache_path_compiles_in_memory(rankers, tmp_path):
    """A cache path that cannot be a directory (here under a file) never stops a load."""
    (tmp_path / "file").write_text("")
    predict, cached = compile_booster(rankers[1].booster, tmp_path / "file" / "cache")
    x = probe_matrix(rankers[1].booster, rows=100, seed=4)
    assert not cached
    np.testing.assert_array_equal(predict(x), rankers[1].booster.predict(x))


def test_in_memory_without_a_cache(rankers):
    predict, cached = compile_booster(rankers[1].booster, None)
    x = probe_matrix(rankers[1].booster, rows=100, seed=3)
    assert not cached
    np.testing.assert_array_equal(predict(x), rankers[1].booster.predict(x))
