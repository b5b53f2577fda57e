"""fit_models reuses what a previous fit on a subset of the events can give it."""

from __future__ import annotations

import dataclasses

from shortlist.common.catalog import ItemCatalog
from shortlist.training.datasets import load
from shortlist.training.models import fit_content, fit_models
from shortlist.training.params import FitParams
from shortlist.training.split import encode, holdout_last


def test_previous_models_give_the_content_index_and_warm_als(synthetic_dir):
    ds = load(str(synthetic_dir))
    catalog = ItemCatalog(ds.items.item_ids, ds.items.titles, ds.items.categories,
                          ds.items.texts)
    users, ev = encode(ds, catalog.vocab)
    p = FitParams(als_factors=8, als_iterations=6, als_warm_iterations=2)
    content = fit_content(ds.items, p)
    subset = ev.take(~holdout_last(ev, 1, 5))
    first, _ = fit_models(subset, users, catalog, content, p)

    cold_p = dataclasses.replace(p, als_warm_start_min_events=len(ev) + 1)
    cold, _ = fit_models(ev, users, catalog, content, cold_p, previous=first)
    assert cold.content_index is first.content_index  # reused whatever the size
    assert cold.als.iterations == 6  # below the threshold: a cold ALS fit

    warm_p = dataclasses.replace(p, als_warm_start_min_events=len(ev))
    warm, _ = fit_models(ev, users, catalog, content, warm_p, previous=first)
    assert warm.als.iterations == 2
    assert warm.als.item_factors.shape == first.als.item_factors.shape
