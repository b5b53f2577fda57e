"""The in-process measurements (LightGBM threads, BLAS threads, dtype, batching) on tiny
settings: well-formed results with every alternative measured. Which alternative is faster
depends on the machine and its load, so no test asserts it."""

from __future__ import annotations

import numpy as np
import pytest

from shortlist.perf import batching, blas_threads, dtype, lightgbm_threads
from tests.perf.conftest import check_result, check_timed


def test_workload_is_real_requests(workload):
    info = workload.info
    assert info["requests"] == len(workload.requests) == len(workload.features) == 3
    assert len(workload.candidates) == 3
    assert 0 < info["candidates_per_request"]["max"] <= 100
    assert set(info["generators"]) >= {"als", "content", "trending"}
    for req, cands, x in zip(workload.requests, workload.candidates, workload.features,
                             strict=True):
        assert len(req.candidates.item_ids) == len(cands) == len(x) > 0
        assert list(req.candidates.generators) == info["generators"]
        assert x.shape[1] == info["features"] == len(workload.ranking.config.features.names)
        assert len(req.items) == min(req.k, len(cands))  # the top k described, as retrieval does
    assert workload.user_vectors.shape[1] == workload.item_factors.shape[1] == info["factor_dim"]


def test_lightgbm_threads(workload):
    res = lightgbm_threads.measure(workload, iterations=5, repeats=2)
    check_result(res, "lightgbm_threads", {"num_threads=1", "num_threads=2", "num_threads=0"})
    for case in res["cases"].values():
        for s in case["alternatives"].values():
            check_timed(s)
            assert s["rounds"] == 2 and s["n"] == 10


def test_blas_threads_runs_each_setting_in_its_own_process(workload):
    res = blas_threads.measure(workload.version_dir, iterations=5, repeats=1, scan_items=2000)
    names = {"OPENBLAS_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=2"}
    check_result(res, "blas_threads", names)
    assert len(res["cases"]) == 4
    for case in res["cases"].values():
        for s in case["alternatives"].values():
            check_timed(s)
    for name in names:  # the variable took effect where OpenBLAS reports its thread count
        for lib in res["effective_blas"][name]:
            if lib["internal_api"] == "openblas":
                assert lib["num_threads"] == int(name.split("=")[1])


def test_blas_operations_use_the_artifacts_als_factors(workload):
    ops = blas_threads.blas_operations(workload.version_dir, scan_items=2000)
    dim = workload.info["factor_dim"]  # 16 here; without factors the operations use 64
    assert [k for k in ops if k.startswith("score_")] == [f"score_300x{dim}"]
    for fn in ops.values():
        fn()


def test_dtype(workload):
    res = dtype.measure(workload, iterations=5, repeats=1)
    check_result(res, "dtype", {"float32", "float64"})
    mem = res["cases"]["memory_100k_x_64"]["alternatives"]
    assert mem["float32"]["mb"] == pytest.approx(25.6)
    assert mem["float64"]["mb"] == pytest.approx(51.2)
    timed = [c for name, c in res["cases"].items() if not name.startswith("memory_")]
    assert len(timed) == 4
    for case in timed:
        for s in case["alternatives"].values():
            check_timed(s)
    wide = dtype.as_float64(workload.ranking.stats)
    assert wide.spaces and all(v.dtype == np.float64 for v in wide.spaces.values())
    assert wide.diversity.dtype == np.float64


def test_batching(workload):
    res = batching.measure(workload, iterations=3, repeats=1, unbatched_iterations=1)
    check_result(res, "batching", {"batched", "per_candidate"})
    for case in res["cases"].values():
        for s in case["alternatives"].values():
            check_timed(s)
    # one candidate at a time computes the same features as all at once, but for the
    # candidate's position in the request (each single row is its own request's first)
    cands = workload.candidates[0]
    pipeline = workload.ranking.pipeline()
    rows = np.vstack([pipeline.features(s) for s in batching.single_rows(cands)])
    names = workload.ranking.config.features.names
    keep = [i for i, name in enumerate(names) if name != "retrieval_rank"]
    np.testing.assert_allclose(rows[:, keep], pipeline.features(cands)[:, keep],
                               equal_nan=True, rtol=1e-5, atol=1e-6)
