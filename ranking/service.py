"""Ranking gRPC service: protobuf <-> domain translation and status codes, nothing else."""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from shortlist.common.logs import new_request_id
from shortlist.common.metrics import Metrics
from shortlist.ranking.bundle import RankingModels
from shortlist.ranking.errors import InvalidRequest
from shortlist.ranking.features import GENERATORS, RankingInput
from shortlist.ranking.pipeline import RankingPipeline
from shortlist.ranking.settings import RankingSettings
from shortlist.v1 import ranking_pb2, ranking_pb2_grpc

logger = logging.getLogger(__name__)
_GEN_INDEX = {g: i for i, g in enumerate(GENERATORS)}
# An item id ranking does not know is learned into its catalog, so it must be a well-formed id.
# Looser than retrieval's default max_id_length (256) so that a retrieval configured for longer
# ids is not refused here; retrieval sends at most 20 recent items.
MAX_ID_LENGTH = 1024
MAX_RECENT_ITEMS = 1000


def _check_new_id(item_id: str) -> None:
    if not item_id:
        raise InvalidRequest("a candidate has an empty item id")
    if len(item_id) > MAX_ID_LENGTH:
        raise InvalidRequest(f"candidate item id longer than {MAX_ID_LENGTH} characters")
    if "\x00" in item_id:
        raise InvalidRequest("candidate item id contains a NUL character")


def check_request(request: ranking_pb2.RankRequest, vocab) -> list[str]:
    """Reject what retrieval never sends; returns the candidate ids unknown to ``vocab``.

    Unknown recent ids are only looked up (ignored).
    """
    if request.user.history_length < 0:
        raise InvalidRequest(f"user.history_length must be >= 0, got "
                             f"{request.user.history_length}")
    if len(request.user.recent_item_ids) > MAX_RECENT_ITEMS:
        raise InvalidRequest(f"user.recent_item_ids has more than {MAX_RECENT_ITEMS} entries")
    cols = request.candidates
    n = len(cols.item_ids)
    for name in ("retrieval_scores", "als_scores", "taste_scores"):
        if len(getattr(cols, name)) != n:
            raise InvalidRequest(f"candidates.{name} has {len(getattr(cols, name))} entries "
                                 f"for {n} candidates")
    cells = n * len(cols.generators)
    for name in ("generator_scores", "generator_ranks"):
        if len(getattr(cols, name)) != cells:
            raise InvalidRequest(f"candidates.{name} has {len(getattr(cols, name))} entries, "
                                 f"expected candidates x generators = {cells}")
    if len(set(cols.generators)) != len(cols.generators):
        raise InvalidRequest("candidates.generators repeats a name")
    if cells and min(cols.generator_ranks) < 0:
        raise InvalidRequest("candidates.generator_ranks must be >= 0")
    ids = list(cols.item_ids)
    if len(set(ids)) != n:  # retrieval's candidates are distinct; the response would repeat
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise InvalidRequest(f"duplicate candidate item id {dup[:64]!r}")
    unknown = vocab.unknown(ids)
    for item_id in unknown:
        _check_new_id(item_id)
    return unknown


@dataclass
class Loaded:
    models: RankingModels
    pipeline: RankingPipeline
    version: str
    lock: threading.Lock = field(default_factory=threading.Lock)

    def learn_items(self, request: ranking_pb2.RankRequest, new: list[str]) -> int:
        """Add candidates newer than this model (upserted items) so they can be ranked.

        Their details come from ``request.items``; an undescribed one is learned bare (its id
        as title, no categories) rather than dropped, so that it can still be served.
        """
        vocab = self.models.catalog.vocab
        if not new:
            return 0
        details = {it.item_id: it for it in request.items}
        catalog, stats = self.models.catalog, self.models.stats
        with self.lock:
            added = 0
            for item_id in new:
                if item_id in vocab:
                    continue  # another request added it meanwhile
                item = details.get(item_id)
                title = item.title if item is not None else item_id
                categories = list(item.categories) if item is not None else []
                cols = [c for c in catalog.category_vocab.indices(categories) if c >= 0]
                stats.append_item(cols)
                catalog.add(item_id, title, categories)
                added += 1
        return added


def _column(values, dtype) -> np.ndarray:
    return np.array(values, dtype=dtype)


def to_input(request: ranking_pb2.RankRequest, models: RankingModels) -> RankingInput:
    """Candidates in the request as item indices (every id is known after learn_items)."""
    vocab = models.catalog.vocab
    cols = request.candidates
    items = vocab.indices(cols.item_ids)
    n = len(items)
    scores = np.full((n, len(GENERATORS)), np.nan, dtype=np.float32)
    ranks = np.zeros((n, len(GENERATORS)), dtype=np.int32)
    if cols.generators:
        g_req = len(cols.generators)
        req_scores = _column(cols.generator_scores, np.float32).reshape(n, g_req)
        req_ranks = _column(cols.generator_ranks, np.int32).reshape(n, g_req)
        for j, name in enumerate(cols.generators):
            g = _GEN_INDEX.get(name)
            if g is not None:  # a generator this model has no feature for is ignored
                scores[:, g] = req_scores[:, j]
                ranks[:, g] = req_ranks[:, j]
    # a non-proposing generator is NaN whatever the sender put there
    scores[ranks == 0] = np.nan
    recent = vocab.indices(request.user.recent_item_ids)
    return RankingInput(items, scores, ranks, _column(cols.retrieval_scores, np.float32),
                        _column(cols.als_scores, np.float32),
                        _column(cols.taste_scores, np.float32),
                        int(request.user.history_length), recent[recent >= 0],
                        int(request.user.last_timestamp) or models.stats.now)


class RankingService(ranking_pb2_grpc.RankingServicer):
    """Keeps the serving version and the one before it, so a request retrieved with either
    is ranked with the same version while both servers move to a new one."""

    KEEP = 2

    def __init__(self, settings: RankingSettings, metrics: Metrics | None = None) -> None:
        self.metrics = metrics or Metrics("ranking")
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
                  "candidates": len(request.candidates.item_ids)}
        try:
            if self.current is None:
                fields["code"] = "UNAVAILABLE"
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
            if len(request.candidates.item_ids) > self.settings.max_candidates:
                raise InvalidRequest(
                    f"more than {self.settings.max_candidates} candidates")
            lam = request.mmr_lambda if request.HasField("mmr_lambda") else None
            if lam is not None and not (0.0 <= lam <= 1.0 and math.isfinite(lam)):
                raise InvalidRequest(f"mmr_lambda must be in [0, 1], got {lam}")
            unknown = check_request(request, loaded.models.catalog.vocab)
            learned = loaded.learn_items(request, unknown)
            inp = to_input(request, loaded.models)
            if lam is None:
                lam = self.settings.mmr_lambda
            pos, scores, timings = loaded.pipeline.rank(inp, k, lam)
            response = ranking_pb2.RankResponse(version=loaded.version)
            catalog = loaded.models.catalog
            picked = inp.items[pos].tolist()
            for r, (item, s) in enumerate(zip(picked, scores.tolist(), strict=True)):
                response.items.add(item_id=catalog.vocab.id(item), score=s, rank=r + 1,
                                   title=catalog.titles[item],
                                   categories=catalog.categories[item])
            for key, ms in timings.items():
                response.timings_ms[key] = ms
            response.timings_ms["total"] = (time.perf_counter() - start) * 1e3
            self.metrics.stages(response.timings_ms)
            fields.update(code="OK", returned=len(response.items), version=loaded.version)
            if learned:
                fields["new_items"] = learned
            return response
        except InvalidRequest as exc:
            fields.update(code="INVALID_ARGUMENT", error=str(exc))
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        finally:
            fields["ms"] = round((time.perf_counter() - start) * 1e3, 3)
            self.metrics.request("Rank", fields.get("code", "UNKNOWN"), fields["ms"])
            logger.info("request", extra={"fields": fields})
