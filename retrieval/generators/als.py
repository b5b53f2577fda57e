"""ALS: implicit-feedback matrix factorisation (the ``implicit`` library), proposing the items
with the largest inner product with the user's vector, exactly, over a MIPS HNSW index.

A user whose fitted vector no longer describes them (new events, onboarding picks) gets one by
fold-in against the fixed item factors: the same least-squares problem ALS solves per user.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from shortlist.common.catalog import ItemCatalog
from shortlist.retrieval.als import AlsModel
from shortlist.retrieval.content import normalize_rows
from shortlist.retrieval.generators.base import FitData, Generator, HnswParams, UserState
from shortlist.retrieval.hnsw import MipsIndex, top_k_allowed, top_k_allowed_many

logger = logging.getLogger(__name__)


# The tuning search's values (tuning_grid, refine_grid).
TUNED_FACTORS = (64, 128, 256)
TUNED_REGULARIZATION = (0.1, 1.0, 10.0)
TUNED_ALPHA = (1.0, 5.0)


@dataclass
class AlsConfig:
    candidates: int = 200
    # Few events make a poor ALS vector: short histories get half as many ALS candidates.
    light_factor: float = 0.5
    factors: int = 64
    regularization: float = 0.05
    alpha: float = 2.0
    iterations: int = 15
    # At this many events or more, a fit given a previous one (fitted on a subset of the same
    # events) starts from its factors and runs warm_iterations instead: three cold fits are
    # most of fit's time at 20M events. Smaller data keeps cold fits (seconds).
    warm_start_min_events: int = 2_000_000
    warm_iterations: int = 5


class AlsGenerator(Generator):
    """Implicit ALS over an exact-MIPS HNSW index, fold-in for fresh users."""

    name = "als"
    Config = AlsConfig
    objective = "ndcg"

    def __init__(self, model: AlsModel, index: MipsIndex | None, config: AlsConfig) -> None:
        self.model = model
        self.index = index
        self.config = config
        self._unit: np.ndarray | None = None

    @classmethod
    def fit(cls, data: FitData, config: AlsConfig,
            previous: Generator | None = None) -> AlsGenerator | None:
        ev = data.events
        n_items = len(data.catalog)
        if len(ev.users) < 10 or data.n_users < 2:
            logger.warning("ALS generator skipped: too few interactions")
            return None
        matrix = sp.csr_matrix((np.ones(len(ev.users), np.float32), (ev.users, ev.items)),
                               shape=(data.n_users, n_items))
        if data.negatives is not None and len(data.negatives.users):
            # implicit reads a negative entry as "disliked, with this confidence"
            neg = data.negatives
            matrix = matrix + sp.csr_matrix(
                (-np.abs(np.asarray(neg.weights, np.float32)), (neg.users, neg.items)),
                shape=(data.n_users, n_items))
        warm = (previous.model if isinstance(previous, AlsGenerator)
                and previous.config.factors == config.factors
                and previous.model.user_factors.shape == (data.n_users, config.factors)
                and previous.model.item_factors.shape[0] == n_items
                and len(ev.users) >= config.warm_start_min_events else None)
        model = cls.solve(AlsModel(config.factors, config.regularization, config.alpha,
                                   config.warm_iterations if warm is not None
                                   else config.iterations, data.seed), matrix, data, warm)
        index = None
        if data.build_index:
            h = data.hnsw
            index = MipsIndex.build(model.item_factors, h.m, h.ef_construction, h.ef, data.seed)
        return cls(model, index, config)

    @classmethod
    def solve(cls, model: AlsModel, matrix: sp.csr_matrix, data: FitData,
              warm: AlsModel | None) -> AlsModel:
        """Fit ``model``'s factors on ``matrix``: here with ``implicit``; a training engine may
        solve the same problem elsewhere (``training.spark.als``: Spark MLlib)."""
        return model.fit(matrix, show_progress=data.progress, init=warm)

    @classmethod
    def tuning_grid(cls, config: AlsConfig) -> list[dict[str, Any]]:
        # λ and α at the fewest factors first; refine_grid then climbs the factors
        return [{"factors": TUNED_FACTORS[0], "regularization": r, "alpha": a}
                for r in TUNED_REGULARIZATION for a in TUNED_ALPHA]

    @classmethod
    def refine_grid(cls, best: dict[str, Any], tried: list[dict[str, Any]], rounds: int = 1
                    ) -> list[dict[str, Any]]:
        """The next factor count, at the last round's λ and the next λ up, its α.

        A climb, not the 18-point grid it replaced: the fits at 256 factors cost four times
        those at 64, and the 18 fits were 9.5 of fit's 38.6 minutes at 1M users. The best λ
        only rises with the factors (more parameters want more shrinkage), so each step
        tries the last step's λ and the next one up. Replayed on the 18-point tables of the
        13 zoo reports, it picks each table's best point with 10 fits or fewer
        (docs/design.md, "Tuning at scale").
        """
        if "factors" not in best or "regularization" not in best:
            return []
        larger = [f for f in TUNED_FACTORS if f > max(int(t.get("factors", 0)) for t in tried)]
        if not larger:
            return []
        lam = float(best["regularization"])
        up = [r for r in TUNED_REGULARIZATION if r > lam][:1]
        return [{**best, "factors": larger[0], "regularization": r} for r in [lam, *up]]

    def vector(self, user: UserState) -> np.ndarray | None:
        """The user's stored factors while they describe them, else a fold-in of their items."""
        if "als" not in user.memo:
            factors = self.model.user_factors
            if user.stored and 0 <= user.user < len(factors):
                vec = factors[user.user]
            else:
                known = user.items < len(self.model.item_factors)
                vec = None
                if known.any():
                    # per distinct item its latest event: 1 if it says "more like this", the
                    # event's own (negative) weight if it was a dislike (see AlsModel.fold_in)
                    items, weights = user.items[known][::-1], user.weights[known][::-1]
                    items, last = np.unique(items, return_index=True)
                    signed = weights[last]
                    vec = self.model.fold_in(items, np.where(signed < 0, signed, 1.0))
            user.memo["als"] = vec
        return user.memo["als"]

    def propose(self, user: UserState, k: int,
                banned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vec = self.vector(user)
        if vec is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return top_k_allowed(self.index, self.model.item_factors, vec, k, banned)

    def propose_many(self, users: Sequence[UserState], k: int,
                     banned: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        return top_k_allowed_many(self.index, self.model.item_factors,
                                  [self.vector(u) for u in users], k, banned)

    def affinity(self, user: UserState, items: np.ndarray) -> np.ndarray | None:
        vec = self.vector(user)
        if vec is None:
            return None
        factors = self.model.item_factors
        out = np.full(len(items), np.nan, np.float32)
        known = items < len(factors)  # items added while serving have no factors
        out[known] = factors[items[known]] @ vec
        return out

    def item_vectors(self) -> np.ndarray:
        if self._unit is None:
            self._unit = normalize_rows(self.model.item_factors)
        return self._unit

    def warm(self) -> None:
        """Pay for the Gram matrix now, not in the first fold-in a user waits for."""
        _ = self.model.gram

    def save(self, directory: Path) -> None:
        self.model.save(directory)
        if self.index is not None:
            self.index.save(directory / "index.bin")

    @classmethod
    def load(cls, directory: Path, config: AlsConfig, catalog: ItemCatalog,
             hnsw: HnswParams) -> AlsGenerator:
        model = AlsModel.load(directory)
        index = (MipsIndex.load(directory / "index.bin", model.item_factors, hnsw.ef)
                 if (directory / "index.bin").is_file() else None)
        return cls(model, index, config)
