"""fit_models fits every registered generator and reuses what a previous fit can give it."""

from __future__ import annotations

import numpy as np
import pytest

from shortlist.common.catalog import ItemCatalog
from shortlist.retrieval.generators import default_registry
from shortlist.training.datasets import load
from shortlist.training.models import fit_models
from shortlist.training.params import FitParams
from shortlist.training.split import encode, holdout_last


def _data(synthetic_dir):
    ds = load(str(synthetic_dir))
    catalog = ItemCatalog(ds.items.item_ids, ds.items.titles, ds.items.categories,
                          ds.items.texts)
    users, ev = encode(ds, catalog.vocab)
    return catalog, users, ev


def test_previous_models_give_the_content_model_and_warm_als(synthetic_dir):
    catalog, users, ev = _data(synthetic_dir)
    registry = default_registry()
    als = {"factors": 8, "iterations": 6, "warm_iterations": 2}
    p = FitParams(generators={"als": als, "content": {"dim": 8}})
    subset = ev.take(~holdout_last(ev, 1, 5))
    first, _ = fit_models(subset, users, catalog, p, registry)

    p.set_generator("als", warm_start_min_events=len(ev) + 1)
    cold, _ = fit_models(ev, users, catalog, p, registry, previous=first)
    # the content model and its index depend on the catalog only: reused whatever the size
    assert cold.generators["content"].model is first.generators["content"].model
    assert cold.generators["content"].index is first.generators["content"].index
    assert cold.generators["als"].model.iterations == 6  # below the threshold: a cold fit

    p.set_generator("als", warm_start_min_events=len(ev))
    warm, _ = fit_models(ev, users, catalog, p, registry, previous=first)
    assert warm.generators["als"].model.iterations == 2
    assert (warm.generators["als"].model.item_factors.shape
            == first.generators["als"].model.item_factors.shape)

    # released: the same reuse, and the previous set gives each generator up once used
    content = first.generators["content"].model
    taken, _ = fit_models(ev, users, catalog, p, registry, previous=first,
                          release_previous=True)
    assert first.generators == {}
    assert taken.generators["content"].model is content
    assert taken.generators["als"].model.iterations == 2
    assert set(taken.generators) == set(warm.generators)


def test_registry_decides_which_generators_are_fitted(synthetic_dir):
    catalog, users, ev = _data(synthetic_dir)
    p = FitParams(generators={"als": {"factors": 8, "iterations": 2}, "content": {"dim": 8}})
    registry = default_registry().without("ease", "itemknn", "sequence", "demographic")
    models, stats = fit_models(ev, users, catalog, p, registry.without("als"))
    assert list(models.generators) == ["content", "trending"]
    assert set(stats.spaces) == {"content"} and stats.diversity_space == "content"
    no_content, stats = fit_models(ev, users, catalog, p, registry.without("content"))
    assert list(no_content.generators) == ["als", "trending"]
    # without a content space, diversity falls back to the behavioural one
    assert stats.diversity_space == "als"


def test_freed_heap_goes_back_to_the_os():
    """Mid-sized arrays live on the heap; once freed, glibc keeps their pages until trimmed
    (a fit at 1M users held 0.5 GB so)."""
    import ctypes
    import ctypes.util

    from shortlist.training.models import release_freed_heap

    if not hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "malloc_trim"):
        pytest.skip("not glibc")

    def rss_kb() -> int:
        return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])

    arrays = [np.ones(8000) for _ in range(2000)]  # 64 KB each: below glibc's mmap threshold
    last = arrays[-1]  # pins the heap's top, so only a trim can give back the rest
    del arrays
    before = rss_kb()
    release_freed_heap()
    assert before - rss_kb() > 50_000  # of the 125 MB freed
    assert last.sum() == 8000
