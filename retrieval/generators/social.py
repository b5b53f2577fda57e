"""Social: what the people a user follows engaged with, weighted by tie strength and recency.

    score(u, i) = sum over friends f of tie(u, f) * sum over f's events on i of decay(age)

Ties come from the data's ``social.csv`` (optionally taken both ways: friendship rather than
following), each user's ties normalised to sum to one so a user with many friends is not
louder than one with few, and friends' events decay with ``half_life_days`` (what friends are
into now). A user the data knows only by their ties (no event yet) is served their friends'
items from the first request: the social rung of cold start.

The model keeps the friends' events it was fitted on: events recorded while serving reach it
at the next fit, like every other generator's view of other users.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from shortlist.common.catalog import ItemCatalog
from shortlist.retrieval.generators.base import (
    FitData,
    Generator,
    GeneratorSkipped,
    HnswParams,
    UserState,
)
from shortlist.retrieval.generators.itemitem import ItemItemGenerator, load_csr, save_csr
from shortlist.retrieval.trending import decay
from shortlist.retrieval.weights import confidence


@dataclass
class SocialConfig:
    candidates: int = 50
    light_factor: float = 1.5
    # Friends' events lose half their weight every this many days before the latest event;
    # 0: no decay.
    half_life_days: float = 0.0
    # Read each tie both ways (friendship) rather than as given (following).
    symmetric: bool = True
    # How a friend's event counts: binary (any event), or its weight through log1p/linear.
    confidence: str = "binary"


class SocialGenerator(ItemItemGenerator):
    """Items the user's friends engaged with lately, by tie strength."""

    name = "social"
    Config = SocialConfig
    serves_new_users = True
    untimed = {"half_life_days": 0.0}

    # Serving (propose, affinity) is the item-item generators': only ``scores`` differs, a
    # user's friends' events rather than their own items' neighbours.
    def __init__(self, ties: sp.csr_matrix, engaged: sp.csr_matrix,
                 config: SocialConfig) -> None:
        self.ties = ties  # (users, users), rows sum to 1
        self.engaged = engaged  # (users, items): each user's decayed events
        self.config = config

    @classmethod
    def fit(cls, data: FitData, config: SocialConfig,
            previous: Generator | None = None) -> SocialGenerator:
        friends = data.friends
        if friends is None:
            raise GeneratorSkipped("the data has no social graph (add a social.csv)")
        ties = friends.tocsr().astype(np.float32)
        if config.symmetric:
            ties = ties.maximum(ties.T).tocsr()
        ties.setdiag(0)
        ties.eliminate_zeros()
        if ties.nnz == 0:
            raise GeneratorSkipped("the social graph has no tie between users with an index")
        degree = np.asarray(ties.sum(axis=1)).ravel()
        degree[degree == 0] = 1.0
        ties = (sp.diags((1.0 / degree).astype(np.float32)) @ ties).tocsr()
        ev = data.events
        age_s = (data.now - np.asarray(ev.timestamps, np.int64)).astype(np.float64)
        strength = (confidence(np.asarray(ev.weights), config.confidence).astype(np.float64)
                    * decay(age_s, config.half_life_days))
        engaged = sp.csr_matrix((strength.astype(np.float32), (ev.users, ev.items)),
                                shape=(ties.shape[0], len(data.catalog)), dtype=np.float32)
        engaged.sum_duplicates()
        engaged.eliminate_zeros()
        return cls(ties, engaged, config)

    @classmethod
    def tuning_grid(cls, config: SocialConfig) -> list[dict[str, Any]]:
        return [{"half_life_days": h, "symmetric": s}
                for h in (0.0, 30.0, 180.0) for s in (True, False)]

    def scores(self, user: UserState) -> tuple[np.ndarray, np.ndarray] | None:
        """(items, scores) of every item a friend engaged with, items sorted; memoised."""
        if self.name not in user.memo:
            found = None
            if 0 <= user.user < self.ties.shape[0]:
                row = self.ties[user.user]
                if row.nnz:
                    s = (row @ self.engaged).tocsr()
                    s.sum_duplicates()
                    order = np.argsort(s.indices)
                    found = (s.indices[order].astype(np.int64), s.data[order])
            user.memo[self.name] = found
        return user.memo[self.name]

    def add_item(self, idx: int, document: str) -> None:
        if idx >= self.engaged.shape[1]:
            self.engaged = sp.csr_matrix(
                (self.engaged.data, self.engaged.indices, self.engaged.indptr),
                shape=(self.engaged.shape[0], idx + 1))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        save_csr(directory / "ties.npz", self.ties)
        save_csr(directory / "engaged.npz", self.engaged)

    @classmethod
    def load(cls, directory: Path, config: SocialConfig, catalog: ItemCatalog,
             hnsw: HnswParams) -> SocialGenerator:
        return cls(load_csr(directory / "ties.npz"), load_csr(directory / "engaged.npz"), config)
