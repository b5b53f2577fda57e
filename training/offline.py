"""The serving pipeline run offline: the same candidate and ranking code the servers call."""

from __future__ import annotations

from shortlist.common.candidates import Candidates
from shortlist.retrieval.bundle import RetrievalModels, banned_mask
from shortlist.retrieval.candidates import CandidateSource


def candidates_for(models: RetrievalModels, source: CandidateSource, user: int) -> Candidates:
    state = models.user_state(user)
    return source.generate(state, banned_mask(len(models.catalog), state.items))
