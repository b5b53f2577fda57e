"""Trending: the most popular items lately (time-decayed counts); serves users with no history."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shortlist.common.catalog import ItemCatalog
from shortlist.retrieval.generators.base import FitData, Generator, HnswParams, UserState
from shortlist.retrieval.trending import TrendingModel


@dataclass
class TrendingConfig:
    candidates: int = 50
    light_factor: float = 1.0
    half_life_days: float = 30.0


class TrendingGenerator(Generator):
    """Time-decayed popularity; serves users with no history."""

    name = "trending"
    Config = TrendingConfig
    serves_new_users = True
    untimed = {"half_life_days": 0.0}

    def __init__(self, model: TrendingModel, config: TrendingConfig) -> None:
        self.model = model
        self.config = config

    @classmethod
    def fit(cls, data: FitData, config: TrendingConfig,
            previous: Generator | None = None) -> TrendingGenerator:
        ev = data.events
        model = TrendingModel(half_life_days=config.half_life_days).fit(
            ev.items, ev.timestamps, len(data.catalog), data.now)
        return cls(model, config)

    @classmethod
    def tuning_grid(cls, config: TrendingConfig) -> list[dict[str, Any]]:
        return [{"half_life_days": h} for h in (3.0, 30.0, 180.0)]

    def propose(self, user: UserState, k: int,
                banned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.model.top(k, banned)

    @property
    def scores(self) -> np.ndarray:
        return self.model.scores

    def add_item(self, idx: int, document: str) -> None:
        self.model.extend(idx + 1)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(directory / "scores.npy")

    @classmethod
    def load(cls, directory: Path, config: TrendingConfig, catalog: ItemCatalog,
             hnsw: HnswParams) -> TrendingGenerator:
        return cls(TrendingModel.load(directory / "scores.npy", config.half_life_days), config)

