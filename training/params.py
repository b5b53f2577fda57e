"""Every hyperparameter `fit` uses, recorded in the manifest."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FitParams:
    seed: int = 42
    # choose the values below on validation data (training.fit.TuningGrid) before fitting
    tune: bool = True
    # trending
    trending_half_life_days: float = 30.0
    # content
    content_dim: int = 64
    taste_half_life_days: float = 365.0
    # ALS (implicit)
    als_factors: int = 64
    als_regularization: float = 0.05
    als_alpha: float = 2.0
    als_iterations: int = 15
    # At this many events or more, the validation and final ALS fits start from the previous
    # fit's factors (their events are a superset) and run als_warm_iterations instead: three
    # cold fits are most of fit's time at 20M events. Smaller data keeps cold fits (seconds).
    als_warm_start_min_events: int = 2_000_000
    als_warm_iterations: int = 5
    # HNSW
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    # Search ef 800: on the 100K-item scale artifact, ef 200 found only 0.89 (ALS) and 0.93
    # (content) of the exact top N; ef 800 finds 0.96 and 0.97 and is still 3x faster than an
    # exact scan (python -m shortlist.perf.ann, docs/performance.md). Smaller catalogs lose ~0.2 ms.
    hnsw_ef: int = 800
    # candidates per generator and after merge
    als_candidates: int = 200
    content_candidates: int = 100
    trending_candidates: int = 50
    max_candidates: int = 300
    # ranker: the latest label_fraction of each user's training events are the labels
    label_fraction: float = 0.2
    min_user_items: int = 5
    max_ranker_users: int = 20000
    # validation metrics (and the tuning that reads them) on at most this many users: at a
    # million users the full set costs more than the fit and moves the mean by noise only
    max_eval_users: int = 20000
    ranker_rounds: int = 400
    ranker_learning_rate: float = 0.05
    ranker_num_leaves: int = 31
    # MMR
    mmr_lambda: float = 0.8
    mmr_top_n: int = 50
