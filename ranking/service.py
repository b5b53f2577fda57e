"""Ranking gRPC service: protobuf <-> domain translation, nothing else.

Typed errors (``ranking.errors``) become status codes at the gRPC edge; the state (versions,
learned items) lives in ``ranking.state``.
"""

from __future__ import annotations

import math
import time

from shortlist.common import edge, validation
from shortlist.common.candidates import Candidates, ContractError
from shortlist.common.rules import read_rules
from shortlist.ranking.errors import InvalidRequest
from shortlist.ranking.settings import RankingSettings
from shortlist.ranking.state import ItemDetails, RankingState
from shortlist.v1 import ranking_pb2, ranking_pb2_grpc

# An item id ranking does not know is learned into its catalog, so it must be a well-formed id.
# Looser than retrieval's default max_id_length (256) so that a retrieval configured for longer
# ids is not refused here; retrieval sends at most 20 recent items.
MAX_ID_LENGTH = 1024
MAX_RECENT_ITEMS = 1000
# k when a request leaves it at 0.
DEFAULT_K = 10


def read_candidates(request: ranking_pb2.RankRequest, vocab, now: int) -> Candidates:
    """The request's candidates as indices of ``vocab``; unknown ids stay -1 (and must be
    well-formed, since they will be learned). Rejects what retrieval never sends."""
    if request.user.history_length < 0:
        raise InvalidRequest(f"user.history_length must be >= 0, got "
                             f"{request.user.history_length}")
    validation.check_count("user.recent_item_ids", request.user.recent_item_ids,
                           MAX_RECENT_ITEMS)
    try:
        cands = Candidates.from_proto(request.candidates, request.user, vocab.indices, now)
    except ContractError as exc:
        raise InvalidRequest(str(exc)) from exc
    ids = request.candidates.item_ids
    if len(set(ids)) != len(ids):  # retrieval's candidates are distinct; the answer would not be
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise InvalidRequest(f"duplicate candidate item id {dup[:64]!r}")
    for row in (cands.items < 0).nonzero()[0].tolist():
        validation.check_id("candidate item id", ids[row], MAX_ID_LENGTH)
    return cands


class RankingService(ranking_pb2_grpc.RankingServicer):
    def __init__(self, settings: RankingSettings, state: RankingState) -> None:
        self.settings = settings
        self.state = state

    def Rank(self, request, context):
        start = time.perf_counter()
        edge.annotate(user_id=request.user.user_id[:64],
                      candidates=len(request.candidates.item_ids))
        k = validation.check_k(request.k, DEFAULT_K, self.settings.max_k)
        if len(request.candidates.item_ids) > self.settings.max_candidates:
            raise InvalidRequest(f"more than {self.settings.max_candidates} candidates")
        lam = request.mmr_lambda if request.HasField("mmr_lambda") else None
        if lam is not None and not (0.0 <= lam <= 1.0 and math.isfinite(lam)):
            raise InvalidRequest(f"mmr_lambda must be in [0, 1], got {lam}")
        if lam is None:
            lam = self.settings.mmr_lambda
        loaded = self.state.pick(request.version)
        catalog = loaded.models.catalog
        cands = read_candidates(request, catalog.vocab, loaded.models.stats.now)
        details = {it.item_id: ItemDetails(it.title, tuple(it.categories))
                   for it in request.items}
        rules = read_rules(request.rules)
        ranked = self.state.rank(loaded.version, cands, list(request.candidates.item_ids),
                                 details, k, lam, rules, request.explain, request.order)
        response = ranking_pb2.RankResponse(version=loaded.version,
                                            configuration=ranked.configuration)
        for r, (item, s) in enumerate(zip(ranked.items.tolist(), ranked.scores.tolist(),
                                          strict=True)):
            added = response.items.add(
                item_id=catalog.vocab.id(item), score=s, rank=r + 1, title=catalog.titles[item],
                categories=catalog.categories[item], rules=ranked.rules.get(item, ()))
            for name, text, value in ranked.contributions.get(item, ()):
                added.contributions.add(feature=name, description=text, contribution=value)
            if item in ranked.because_of:
                added.because_of_item_id = catalog.vocab.id(ranked.because_of[item])
            added.score_rank = ranked.score_ranks.get(item, 0)
        for key, ms in ranked.timings_ms.items():
            response.timings_ms[key] = ms
        response.timings_ms["total"] = (time.perf_counter() - start) * 1e3
        if rules:
            edge.annotate(rules=len(rules))
        edge.annotate(returned=len(response.items), version=loaded.version,
                      configuration=ranked.configuration)
        if ranked.learned:
            edge.annotate(new_items=ranked.learned)
        return response
