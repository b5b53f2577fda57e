"""Ranking gRPC service: protobuf <-> domain translation and status codes, nothing else."""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from ranking.bundle import RankingModels
from ranking.errors import InvalidRequest
from ranking.features import GENERATORS, RankingInput
from ranking.pipeline import RankingPipeline
from ranking.settings import RankingSettings
from shortlist.common.logs import new_request_id
from shortlist.v1 import ranking_pb2, ranking_pb2_grpc

logger = logging.getLogger(__name__)
_GEN_INDEX = {g: i for i, g in enumerate(GENERATORS)}
# An item id ranking does not know is learned into its catalog, so it must be a well-formed id.
# Looser than retrieval's default max_id_length (256) so that a retrieval configured for longer
# ids is not refused here; retrieval sends at most 20 recent items.
MAX_ID_LENGTH = 1024
MAX_RECENT_ITEMS = 1000


def check_request(request: ranking_pb2.RankRequest, vocab) -> None:
    """Reject what retrieval never sends; unknown recent ids are only looked up (ignored)."""
    if request.user.history_length < 0:
        raise InvalidRequest(f"user.history_length must be >= 0, got "
                             f"{request.user.history_length}")
    if len(request.user.recent_item_ids) > MAX_RECENT_ITEMS:
        raise InvalidRequest(f"user.recent_item_ids has more than {MAX_RECENT_ITEMS} entries")
    seen: set[str] = set()
    for cand in request.candidates:
        item_id = cand.item.item_id
        if item_id in seen:  # retrieval's candidates are distinct; the response would repeat it
            raise InvalidRequest(f"duplicate candidate item id {item_id[:64]!r}")
        seen.add(item_id)
        if item_id in vocab:
            continue
        if not item_id:
            raise InvalidRequest("a candidate has an empty item id")
        if len(item_id) > MAX_ID_LENGTH:
            raise InvalidRequest(f"candidate item id longer than {MAX_ID_LENGTH} characters")
        if "\x00" in item_id:
            raise InvalidRequest("candidate item id contains a NUL character")


@dataclass
class Loaded:
    models: RankingModels
    pipeline: RankingPipeline
    version: str
    lock: threading.Lock = field(default_factory=threading.Lock)

    def learn_items(self, request: ranking_pb2.RankRequest) -> int:
        """Add candidates newer than this model (upserted items) so they can be ranked."""
        vocab = self.models.catalog.vocab
        new = [c.item for c in request.candidates if c.item.item_id not in vocab]
        if not new:
            return 0
        catalog, stats = self.models.catalog, self.models.stats
        with self.lock:
            added = 0
            for item in new:
                if item.item_id in vocab:
                    continue  # another request added it meanwhile
                cols = [c for c in catalog.category_vocab.indices(item.categories) if c >= 0]
                stats.append_item(cols)
                catalog.add(item.item_id, item.title, list(item.categories))
                added += 1
        return added


def to_input(request: ranking_pb2.RankRequest, models: RankingModels) -> RankingInput:
    """Candidates in the request, as item indices; unknown items are dropped by the caller."""
    vocab = models.catalog.vocab
    n = len(request.candidates)
    items = np.empty(n, dtype=np.int64)
    scores = np.full((n, len(GENERATORS)), np.nan, dtype=np.float32)
    ranks = np.zeros((n, len(GENERATORS)), dtype=np.int32)
    rrf = np.empty(n, dtype=np.float32)
    als = np.empty(n, dtype=np.float32)
    taste = np.empty(n, dtype=np.float32)
    for row, cand in enumerate(request.candidates):
        items[row] = vocab.index(cand.item.item_id)
        rrf[row], als[row], taste[row] = cand.retrieval_score, cand.als_score, cand.taste_score
        for src in cand.sources:
            g = _GEN_INDEX.get(src.generator)
            if g is not None:
                scores[row, g], ranks[row, g] = src.score, src.rank
    recent = vocab.indices(request.user.recent_item_ids)
    return RankingInput(items, scores, ranks, rrf, als, taste,
                        int(request.user.history_length), recent[recent >= 0],
                        int(request.user.last_timestamp) or models.stats.now)


class RankingService(ranking_pb2_grpc.RankingServicer):
    """Keeps the serving version and the one before it, so a request retrieved with either
    is ranked with the same version while both servers move to a new one."""

    KEEP = 2

    def __init__(self, settings: RankingSettings) -> None:
        self.settings = settings
        self.versions: dict[str, Loaded] = {}
        self.current: Loaded | None = None

    def install(self, loaded: Loaded, version: str) -> None:
        versions = dict(self.versions)
        versions[version] = loaded
        while len(versions) > self.KEEP:
            versions.pop(next(iter(versions)))
        self.versions = versions
        self.current = loaded

    def _pick(self, version: str) -> Loaded | None:
        if not version:
            return self.current
        return self.versions.get(version)

    def Rank(self, request, context):
        start = time.perf_counter()
        rid = request.request_id or new_request_id()
        fields = {"rpc": "Rank", "request_id": rid, "user_id": request.user.user_id[:64],
                  "candidates": len(request.candidates)}
        try:
            if self.current is None:
                context.abort(grpc.StatusCode.UNAVAILABLE, "models are still loading")
            loaded = self._pick(request.version)
            if loaded is None:
                fields["code"] = "FAILED_PRECONDITION"
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"version {request.version} is not loaded here (serving "
                              f"{self.current.version})")
            k = request.k or 10
            if k < 0 or k > self.settings.max_k:
                raise InvalidRequest(f"k must be in [1, {self.settings.max_k}], got {k}")
            if len(request.candidates) > self.settings.max_candidates:
                raise InvalidRequest(
                    f"more than {self.settings.max_candidates} candidates")
            lam = request.mmr_lambda if request.HasField("mmr_lambda") else None
            if lam is not None and not (0.0 <= lam <= 1.0 and math.isfinite(lam)):
                raise InvalidRequest(f"mmr_lambda must be in [0, 1], got {lam}")
            check_request(request, loaded.models.catalog.vocab)
            learned = loaded.learn_items(request)
            inp = to_input(request, loaded.models)
            if lam is None:
                lam = self.settings.mmr_lambda
            pos, scores, timings = loaded.pipeline.rank(inp, k, lam)
            response = ranking_pb2.RankResponse(version=loaded.version)
            ids = loaded.models.catalog.vocab.ids(inp.items[pos])
            for r, (item_id, s) in enumerate(zip(ids, scores.tolist(), strict=True)):
                response.items.add(item_id=item_id, score=s, rank=r + 1)
            for key, ms in timings.items():
                response.timings_ms[key] = ms
            fields.update(code="OK", returned=len(response.items), version=loaded.version)
            if learned:
                fields["new_items"] = learned
            return response
        except InvalidRequest as exc:
            fields.update(code="INVALID_ARGUMENT", error=str(exc))
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        finally:
            fields["ms"] = round((time.perf_counter() - start) * 1e3, 3)
            logger.info("request", extra={"fields": fields})
