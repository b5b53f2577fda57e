"""Fit every registered generator and ranking's item statistics on one set of events."""

from __future__ import annotations

import logging
import time

import numpy as np
from tqdm import tqdm

from shortlist.common.attributes import UserData
from shortlist.common.catalog import ItemCatalog
from shortlist.common.events import UNTYPED, EventTypes
from shortlist.common.vocab import Vocabulary
from shortlist.ranking.features import ItemStats
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.retrieval.candidates import RetrievalConfig
from shortlist.retrieval.generators import (
    FitData,
    HnswParams,
    Registry,
    TrendingGenerator,
    config_of,
    fit_or_skip,
)
from shortlist.retrieval.history import UserHistory
from shortlist.retrieval.trending import TrendingModel
from shortlist.training.params import FitParams
from shortlist.training.split import Events

logger = logging.getLogger(__name__)


def hnsw_params(p: FitParams) -> HnswParams:
    return HnswParams(p.hnsw_m, p.hnsw_ef_construction, p.hnsw_ef)


def fit_data(ev: Events, users: Vocabulary, catalog: ItemCatalog, p: FitParams,
             build_index: bool = True, progress: bool = False,
             user_data: UserData | None = None) -> FitData:
    user_data = user_data or UserData()
    negative = ev.negative
    return FitData(ev.take(~negative) if negative.any() else ev, len(users), catalog,
                   int(ev.timestamps.max()), hnsw_params(p), p.seed, build_index, progress,
                   user_data.attributes, user_data.friends,
                   ev.take(negative) if negative.any() else None)


def release_freed_heap() -> None:
    """Give the heap pages a fit freed back to the OS (glibc's ``malloc_trim``).

    A generator's fit allocates and frees many mid-sized arrays; glibc keeps the freed heap
    for reuse, and the next fits never reuse all of it: after ItemKNN at 1M users, 0.64 GB
    resident for 0.16 GB of weights (0.16 GB with this, at no cost in time). A no-op where
    the C library has no ``malloc_trim`` (musl, macOS)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is not None:
        trim(0)


def fit_models(ev: Events, users: Vocabulary, catalog: ItemCatalog, p: FitParams,
               registry: Registry, progress: bool = False, desc: str = "models",
               previous: RetrievalModels | None = None, build_index: bool = True,
               user_data: UserData | None = None, release_previous: bool = False,
               ) -> tuple[RetrievalModels, ItemStats]:
    """Every generator of ``registry`` plus ranking's item statistics; minutes at a million
    users, so each generator shows on a progress bar.

    ``previous``: models fitted on a subset of ``ev`` (or with other values); each generator
    decides what it can reuse (a content model depends only on the catalog; ALS may start
    from the earlier factors on large data). ``user_data``: user attributes and social ties
    aligned to ``users``, for the generators that read them. ``release_previous``: take
    each generator out of ``previous`` once its successor is fitted, when nothing reads
    ``previous`` afterwards (fit's final models: holding a whole second set through them
    set the fit's memory peak at 1M users).
    """
    steps = tqdm(total=len(registry) + 1, desc=desc, unit="step", disable=not progress,
                 leave=False)
    data = fit_data(ev, users, catalog, p, build_index, progress, user_data)
    history = UserHistory.from_events(ev.users, ev.items, ev.timestamps, ev.weights, len(users))
    generators, seconds, skipped = {}, {}, {}
    for cls in registry:
        steps.set_postfix_str(cls.name)
        before = previous.generators.get(cls.name) if previous is not None else None
        t0 = time.perf_counter()
        gen, why = fit_or_skip(cls, data, config_of(cls, p.generator(cls.name)), before)
        if release_previous and before is not None:
            del previous.generators[cls.name], before
        release_freed_heap()
        if gen is not None:
            generators[cls.name] = gen
            seconds[cls.name] = time.perf_counter() - t0
        else:
            skipped[cls.name] = why
        steps.update()
    steps.set_postfix_str("item statistics")
    models = RetrievalModels(
        catalog=catalog, users=users, history=history, generators=generators,
        config=RetrievalConfig(max_candidates=p.max_candidates,
                               established_min_items=p.min_user_items),
        hnsw=data.hnsw, now=data.now, fit_seconds=seconds, skipped=skipped,
        event_types=ev.types or EventTypes.standard(),
    )
    stats = item_stats(ev, models)
    steps.update()
    steps.close()
    return models, stats


def item_stats(ev: Events, models: RetrievalModels) -> ItemStats:
    """Ranking's view of the items: popularity then and now, age, categories, and each
    generator's similarity space."""
    n_items, now = len(models.catalog), models.now
    typed = ev
    ev = ev.positive()  # a dislike makes nothing popular
    counts = np.bincount(ev.items, minlength=n_items)
    first_seen = np.full(n_items, now, dtype=np.int64)
    np.minimum.at(first_seen, ev.items, ev.timestamps)
    trending = next((g.scores for g in models.generators.values()
                     if isinstance(g, TrendingGenerator)), None)
    if trending is None:
        trending = TrendingModel().fit(ev.items, ev.timestamps, n_items, now).scores
    spaces = models.item_vectors()
    # Diversity is about what items are (content), when the catalog says; else about who
    # consumes them.
    diversity = next((n for n, g in models.generators.items()
                      if n in spaces and g.content_space), next(iter(spaces), ""))
    times_indptr, times = ItemStats.event_times(ev.items, ev.timestamps, n_items)
    return ItemStats(
        popularity=np.log1p(counts).astype(np.float32), trending=trending,
        first_seen=first_seen, genres=models.catalog.category_matrix, spaces=spaces, now=now,
        times_indptr=times_indptr, times=times, diversity_space=diversity,
        event_counts=event_counts(typed, n_items),
    )


def event_types_counted(ev: Events) -> tuple[str, ...]:
    """Types the ranker counts per item: those of typed data with two or more named types."""
    if ev.kinds is None or ev.types is None:
        return ()
    names = [ev.types.names[k] for k in np.unique(ev.kinds).tolist()]
    names = [n for n in names if n != UNTYPED]
    return tuple(names) if len(names) >= 2 else ()


def event_counts(ev: Events, n_items: int) -> dict[str, np.ndarray]:
    if ev.kinds is None or ev.types is None:
        return {}
    return {name: np.bincount(ev.items[ev.kinds == ev.types.names.index(name)],
                              minlength=n_items).astype(np.float32)
            for name in event_types_counted(ev)}
