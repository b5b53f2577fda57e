"""Fit every retrieval model and the ranking item statistics on one set of events."""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

from shortlist.common.catalog import ItemCatalog
from shortlist.common.vocab import Vocabulary
from shortlist.ranking.features import ItemStats
from shortlist.retrieval.als import AlsModel
from shortlist.retrieval.bundle import HnswParams, RetrievalModels
from shortlist.retrieval.candidates import RetrievalConfig
from shortlist.retrieval.content import ContentModel, item_document, normalize_rows
from shortlist.retrieval.history import UserHistory
from shortlist.retrieval.hnsw import HnswIndex, MipsIndex
from shortlist.retrieval.trending import TrendingModel
from shortlist.training.datasets import Items
from shortlist.training.params import FitParams
from shortlist.training.split import Events

logger = logging.getLogger(__name__)


def fit_content(items: Items, p: FitParams) -> ContentModel | None:
    informative = (any(items.categories) or any(t.strip() for t in items.texts)
                   or any(t != i for t, i in zip(items.titles, items.item_ids, strict=True)))
    if len(items) < 3 or not informative:
        logger.warning("content generator skipped: items have no title, category or text "
                       "(add an items.csv to enable it)")
        return None
    docs = [item_document(t, c, x) for t, c, x in
            zip(items.titles, items.categories, items.texts, strict=True)]
    try:
        return ContentModel(dim=p.content_dim, seed=p.seed).fit(docs)
    except ValueError as exc:  # e.g. empty vocabulary
        logger.warning("content generator skipped: %s", exc)
        return None


def fit_models(ev: Events, users: Vocabulary, catalog: ItemCatalog,
               content: ContentModel | None, p: FitParams, progress: bool = False,
               desc: str = "models", previous: RetrievalModels | None = None,
               ) -> tuple[RetrievalModels, ItemStats]:
    """Every retrieval model plus ranking's item statistics; minutes at a million users, so
    each step shows on a progress bar (ALS also shows its iterations).

    ``previous``: models fitted on a subset of ``ev`` with the same parameters. Their content
    index is reused (it does not depend on events) and, on large data, ALS starts from their
    factors (``FitParams.als_warm_start_min_events``).
    """
    steps = tqdm(total=5, desc=desc, unit="step", disable=not progress, leave=False)
    steps.set_postfix_str("trending, history")
    n_users, n_items = len(users), len(catalog)
    now = int(ev.timestamps.max())
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    trending = TrendingModel(half_life_days=p.trending_half_life_days).fit(
        ev.items, ev.timestamps, n_items, now)
    seconds["trending"] = time.perf_counter() - t0
    history = UserHistory.from_events(ev.users, ev.items, ev.timestamps, ev.weights, n_users)
    steps.update()
    steps.set_postfix_str("als")

    als = als_index = None
    t0 = time.perf_counter()
    if len(ev) >= 10 and n_users > 1:
        matrix = sp.csr_matrix((np.ones(len(ev), np.float32), (ev.users, ev.items)),
                               shape=(n_users, n_items))
        warm = (previous.als if previous is not None and previous.als is not None
                and previous.als.factors == p.als_factors
                and len(ev) >= p.als_warm_start_min_events else None)
        als = AlsModel(p.als_factors, p.als_regularization, p.als_alpha,
                       p.als_warm_iterations if warm is not None else p.als_iterations,
                       p.seed).fit(matrix, show_progress=progress, init=warm)
        steps.update()
        steps.set_postfix_str("als index")
        als_index = MipsIndex.build(als.item_factors, p.hnsw_m, p.hnsw_ef_construction,
                                    p.hnsw_ef, p.seed)
        seconds["als"] = time.perf_counter() - t0
    else:
        logger.warning("ALS generator skipped: too few interactions")
        steps.update()
    steps.update()
    steps.set_postfix_str("content index")

    content_index = None
    if content is not None:
        t0 = time.perf_counter()
        if (previous is not None and previous.content is content
                and previous.content_index is not None and previous.hnsw == HnswParams(
                    p.hnsw_m, p.hnsw_ef_construction, p.hnsw_ef)):
            content_index = previous.content_index
        else:
            content_index = HnswIndex.build(content.vectors, "cosine", p.hnsw_m,
                                            p.hnsw_ef_construction, p.hnsw_ef, p.seed)
        seconds["content"] = time.perf_counter() - t0
    steps.update()
    steps.set_postfix_str("item statistics")

    config = RetrievalConfig(
        als_candidates=p.als_candidates, content_candidates=p.content_candidates,
        trending_candidates=p.trending_candidates, max_candidates=p.max_candidates,
        taste_half_life_days=p.taste_half_life_days, established_min_items=p.min_user_items,
    )
    models = RetrievalModels(
        catalog=catalog, users=users, history=history, trending=trending, content=content,
        content_index=content_index, als=als, als_index=als_index, config=config,
        hnsw=HnswParams(p.hnsw_m, p.hnsw_ef_construction, p.hnsw_ef), now=now,
        fit_seconds=seconds,
    )
    counts = np.bincount(ev.items, minlength=n_items)
    first_seen = np.full(n_items, now, dtype=np.int64)
    np.minimum.at(first_seen, ev.items, ev.timestamps)
    vectors = (content.vectors if content is not None
               else np.zeros((n_items, 1), dtype=np.float32))
    als_vectors = (normalize_rows(als.item_factors) if als is not None
                   else np.zeros((n_items, 1), dtype=np.float32))
    times_indptr, times = ItemStats.event_times(ev.items, ev.timestamps, n_items)
    stats = ItemStats(
        popularity=np.log1p(counts).astype(np.float32), trending=trending.scores,
        first_seen=first_seen, genres=catalog.category_matrix, vectors=vectors, now=now,
        als_vectors=als_vectors, times_indptr=times_indptr, times=times,
    )
    steps.update()
    steps.close()
    return models, stats
