"""Retrieval gRPC service: protobuf <-> domain translation and status codes, nothing else."""

from __future__ import annotations

import logging
import time

import grpc
from shortlist.common.logs import new_request_id
from shortlist.v1 import common_pb2, retrieval_pb2, retrieval_pb2_grpc

from retrieval.candidates import GENERATORS
from retrieval.errors import InvalidRequest, ItemNotFound, NotReady, RetrievalError
from retrieval.retriever import Retrieved, RetrieveQuery, Retriever
from retrieval.settings import RetrievalSettings

logger = logging.getLogger(__name__)

SEGMENTS = {
    "new": common_pb2.USER_SEGMENT_NEW,
    "onboarding": common_pb2.USER_SEGMENT_ONBOARDING,
    "light": common_pb2.USER_SEGMENT_LIGHT,
    "established": common_pb2.USER_SEGMENT_ESTABLISHED,
}
_CODES = {InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
          ItemNotFound: grpc.StatusCode.NOT_FOUND, NotReady: grpc.StatusCode.UNAVAILABLE}


class RetrievalService(retrieval_pb2_grpc.RetrievalServicer):
    def __init__(self, settings: RetrievalSettings) -> None:
        self.settings = settings
        self.retriever: Retriever | None = None

    def _current(self) -> Retriever:
        retriever = self.retriever
        if retriever is None:
            raise NotReady("models are still loading")
        return retriever

    def _check_id(self, name: str, value: str, allow_empty: bool = False) -> None:
        if not value and not allow_empty:
            raise InvalidRequest(f"{name} is empty")
        if len(value) > self.settings.max_id_length:
            raise InvalidRequest(f"{name} longer than {self.settings.max_id_length} characters")

    def _check_list(self, name: str, values) -> None:
        if len(values) > self.settings.max_list_items:
            raise InvalidRequest(f"{name} has more than {self.settings.max_list_items} entries")
        for v in values:
            self._check_id(name, v)

    def Retrieve(self, request, context):
        start = time.perf_counter()
        rid = request.request_id or new_request_id()
        fields = {"rpc": "Retrieve", "request_id": rid, "user_id": request.user_id[:64]}
        try:
            self._check_id("user_id", request.user_id)
            self._check_list("recent_item_ids", request.recent_item_ids)
            f = request.filters
            for name in ("exclude_item_ids", "include_categories", "exclude_categories"):
                self._check_list(f"filters.{name}", getattr(f, name))
            query = RetrieveQuery(
                user_id=request.user_id, recent_item_ids=list(request.recent_item_ids),
                exclude_item_ids=list(f.exclude_item_ids),
                include_categories=list(f.include_categories),
                exclude_categories=list(f.exclude_categories),
                max_candidates=request.max_candidates,
            )
            result = self._current().retrieve(query)
            response = to_proto(result, self._current())
            fields.update(code="OK", candidates=len(response.candidates),
                          segment=result.candidates.segment, version=result.version)
            return response
        except RetrievalError as exc:
            fields.update(code=_CODES[type(exc)].name, error=str(exc))
            context.abort(_CODES[type(exc)], str(exc))
        finally:
            fields["ms"] = round((time.perf_counter() - start) * 1e3, 3)
            logger.info("request", extra={"fields": fields})

    def SimilarItems(self, request, context):
        start = time.perf_counter()
        rid = request.request_id or new_request_id()
        fields = {"rpc": "SimilarItems", "request_id": rid, "item_id": request.item_id[:64]}
        try:
            self._check_id("item_id", request.item_id)
            k = request.k or 10
            if k < 0 or k > self.settings.max_k:
                raise InvalidRequest(f"k must be in [1, {self.settings.max_k}], got {k}")
            retriever = self._current()
            idx, scores = retriever.similar_items(request.item_id, k)
            catalog = retriever.models.catalog
            response = retrieval_pb2.SimilarItemsResponse(version=retriever.version)
            for i, s in zip(idx.tolist(), scores.tolist(), strict=True):
                response.items.add(item=item_proto(catalog, i), score=s)
            fields.update(code="OK", items=len(response.items))
            return response
        except RetrievalError as exc:
            fields.update(code=_CODES[type(exc)].name, error=str(exc))
            context.abort(_CODES[type(exc)], str(exc))
        finally:
            fields["ms"] = round((time.perf_counter() - start) * 1e3, 3)
            logger.info("request", extra={"fields": fields})


def item_proto(catalog, idx: int) -> common_pb2.Item:
    return common_pb2.Item(item_id=catalog.vocab.id(idx), title=catalog.titles[idx],
                           categories=catalog.categories[idx])


def to_proto(result: Retrieved, retriever: Retriever) -> retrieval_pb2.RetrieveResponse:
    c = result.candidates
    catalog = retriever.models.catalog
    response = retrieval_pb2.RetrieveResponse(version=result.version)
    response.user.user_id = result.user_id
    response.user.history_length = c.history_length
    response.user.recent_item_ids.extend(catalog.vocab.ids(c.recent_items))
    response.user.segment = SEGMENTS[c.segment]
    response.user.last_timestamp = c.user_time
    for key, ms in c.timings_ms.items():
        response.timings_ms[key] = ms
    for row, item in enumerate(c.items.tolist()):
        cand = response.candidates.add(
            item=item_proto(catalog, item), retrieval_rank=row + 1,
            retrieval_score=float(c.retrieval_score[row]), als_score=float(c.als_score[row]),
            taste_score=float(c.taste_score[row]),
        )
        for g, name in enumerate(GENERATORS):
            rank = int(c.gen_ranks[row, g])
            if rank > 0:
                cand.sources.add(generator=name, score=float(c.gen_scores[row, g]), rank=rank)
    return response
