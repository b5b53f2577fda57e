"""The serving pipeline run offline: the same candidate and ranking code the servers call."""

from __future__ import annotations

import numpy as np

from shortlist.ranking.features import RankingInput
from shortlist.ranking.pipeline import RankingPipeline
from shortlist.retrieval.bundle import RetrievalModels, banned_mask
from shortlist.retrieval.candidates import CandidateGenerator, CandidateSet


def to_ranking_input(c: CandidateSet) -> RankingInput:
    return RankingInput(
        items=c.items, gen_scores=c.gen_scores, gen_ranks=c.gen_ranks,
        retrieval_score=c.retrieval_score, als_score=c.als_score, taste_score=c.taste_score,
        history_length=c.history_length, recent_items=c.recent_items, user_time=c.user_time,
    )


def candidates_for(models: RetrievalModels, gen: CandidateGenerator, user: int) -> CandidateSet:
    items, stamps, _ = models.history.events(user)
    banned = banned_mask(len(models.catalog), items)
    return gen.generate(user, items, stamps, np.zeros(0, np.int64), banned)


def recommend(models: RetrievalModels, gen: CandidateGenerator, pipeline: RankingPipeline | None,
              user: int, k: int, mmr_lambda: float | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """(item indices, scores) for one user; retrieval order when there is no ranker."""
    cands = candidates_for(models, gen, user)
    if pipeline is None or len(cands) == 0:
        return cands.items[:k], cands.retrieval_score[:k]
    pos, scores, _ = pipeline.rank(to_ranking_input(cands), k, mmr_lambda)
    return cands.items[pos], scores
