"""Score candidates with the ranker, then diversify the top with MMR."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from shortlist.ranking.features import FEATURE_NAMES, ItemStats, RankingInput, build_features
from shortlist.ranking.mmr import mmr
from shortlist.ranking.ranker import LambdaRanker


@dataclass
class RankingConfig:
    mmr_lambda: float = 0.8
    mmr_top_n: int = 50


class RankingPipeline:
    def __init__(self, ranker: LambdaRanker, stats: ItemStats, config: RankingConfig) -> None:
        names = ranker.booster.feature_name() if ranker.booster is not None else FEATURE_NAMES
        if list(names) != FEATURE_NAMES:
            raise ValueError(f"ranker features {names} differ from {FEATURE_NAMES}")
        self.ranker = ranker
        self.stats = stats
        self.config = config

    def rank(self, inp: RankingInput, k: int,
             mmr_lambda: float | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """(positions into ``inp.items`` in final order, their ranker scores, timings)."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        x = build_features(inp, self.stats)
        timings["features"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        scores = self.ranker.predict(x)
        timings["model"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        picked = self.diversify(inp.items, scores, k, mmr_lambda)
        timings["mmr"] = (time.perf_counter() - t0) * 1e3
        return picked, scores[picked], timings

    def diversify(self, items: np.ndarray, scores: np.ndarray, k: int,
                  mmr_lambda: float | None = None) -> np.ndarray:
        """Positions of the final k: MMR over the ``mmr_top_n`` best-scored candidates."""
        lam = self.config.mmr_lambda if mmr_lambda is None else mmr_lambda
        top = np.argsort(-scores, kind="stable")[: max(k, self.config.mmr_top_n)]
        return top[mmr(scores[top], self.stats.vectors[items[top]], k, lam)]
