"""Every hyperparameter `fit` uses, recorded in the manifest.

Values that belong to one generator live in that generator's config dataclass
(``shortlist.retrieval.generators``); ``generators`` here overrides their defaults by name, and
after a fit holds every generator's full config as chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FitParams:
    seed: int = 42
    # choose the values below on validation data (training.fit.TuningGrid) before fitting
    tune: bool = True
    # Above this many users, each generator's values are tuned on a sample of this many
    # (training.fit.tuning_sample); 0: always on everyone.
    tune_max_users: int = 50_000
    # Typed data: weight per event type over the standard table (common.events), e.g.
    # {"purchase": 8}; tuning then scales the magnitudes it finds in the data (signs stay).
    event_weights: dict[str, float] = field(default_factory=dict)
    # Per-generator config values by generator name, e.g. {"als": {"factors": 128}}; the
    # generator's defaults fill the rest.
    generators: dict[str, dict[str, Any]] = field(default_factory=dict)
    # HNSW
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    # Search ef 800: on the 100K-item scale artifact, ef 200 found only 0.89 (ALS) and 0.93
    # (content) of the exact top N; ef 800 finds 0.96 and 0.97 and is still 3x faster than an
    # exact scan (python -m shortlist.perf.ann, docs/performance.md). Smaller catalogs lose
    # ~0.2 ms.
    hnsw_ef: int = 800
    # merged candidates handed to the ranker
    max_candidates: int = 300
    # ranker: the latest label_fraction of each user's training events are the labels
    label_fraction: float = 0.2
    # With time, the first label_next of a user's label events (the ones right after what the
    # generators saw) are graded label_next_grade and the rest 1: a leave-last-out test asks
    # for the next item, and a flat window teaches the ranker to find any later one. Tuning
    # tries flat labels too and keeps the better on validation (docs/design.md). 0: flat.
    # Without time the window has no order, and is flat.
    label_next: int = 3
    label_next_grade: int = 2
    min_user_items: int = 5
    max_ranker_users: int = 20000
    # Above this many label users, tuning chooses the candidate scale and the ranker's leaves
    # on rankers trained and scored on this many users; the chosen setting is then trained on
    # max_ranker_users (training.fit.train_pipeline). 0: tune on max_ranker_users.
    tune_ranker_users: int = 5000
    # validation metrics (and the tuning that reads them) on at most this many users: at a
    # million users the full set costs more than the fit and moves the mean by noise only
    max_eval_users: int = 20000
    ranker_rounds: int = 400
    ranker_learning_rate: float = 0.05
    ranker_num_leaves: int = 31
    # Share of the label users held out of the ranker's training to early-stop it on
    # (training.fit.train_ranker); 0: stop on validation.
    ranker_stop_share: float = 0.2
    # The configuration to serve: "" lets the guard rails choose on validation (the ranker
    # unless a generator alone beats it); "ranker", "generator:NAME" or "retrieval" pins it.
    order: str = ""
    # Diversity re-ranking: the method (mmr, dpp, calibration), the weight of relevance
    # (1.0: none) and the pool of best-scored candidates it re-ranks.
    diversity: str = "mmr"
    mmr_lambda: float = 0.8
    mmr_top_n: int = 50

    def generator(self, name: str) -> dict[str, Any]:
        return dict(self.generators.get(name, {}))

    def set_generator(self, name: str, **values: Any) -> None:
        self.generators = {**self.generators, name: {**self.generator(name), **values}}
