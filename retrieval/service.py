"""Retrieval gRPC service: protobuf <-> domain translation and status codes, nothing else."""

from __future__ import annotations

import logging
import math
import re
import time

import grpc

from shortlist.common.logs import new_request_id
from shortlist.common.metrics import Metrics
from shortlist.retrieval.candidates import GENERATORS
from shortlist.retrieval.errors import InvalidRequest, ItemNotFound, NotReady, RetrievalError
from shortlist.retrieval.online import RetrievalState
from shortlist.retrieval.retriever import Retrieved, RetrieveQuery, Retriever
from shortlist.retrieval.search import fold
from shortlist.retrieval.settings import RetrievalSettings
from shortlist.v1 import common_pb2, retrieval_pb2, retrieval_pb2_grpc

logger = logging.getLogger(__name__)

# How far ahead of this server's clock an interaction's timestamp may be (clock skew): a
# timestamp beyond it would become the user's "now" and skew every time-aware feature.
MAX_FUTURE_S = 86400
# Longest run of letters/digits (a "word") or of whitespace in an item's title or text. The
# search index's tokenisers (retrieval/search.py: _COMPOUND in document_tokens, _YEAR_SUFFIX in
# title_keys) are quadratic in such a run, under the write and search locks: one 20,000-letter
# word took ~7 s to index, stalling every write and search meanwhile. 256 keeps it under 0.1 s.
MAX_RUN_LENGTH = 256
_RUN = re.compile(r"[^\W_]+|\s+")

SEGMENTS = {
    "new": common_pb2.USER_SEGMENT_NEW,
    "onboarding": common_pb2.USER_SEGMENT_ONBOARDING,
    "light": common_pb2.USER_SEGMENT_LIGHT,
    "established": common_pb2.USER_SEGMENT_ESTABLISHED,
}
_CODES = {InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
          ItemNotFound: grpc.StatusCode.NOT_FOUND, NotReady: grpc.StatusCode.UNAVAILABLE}


class RetrievalService(retrieval_pb2_grpc.RetrievalServicer):
    def __init__(self, settings: RetrievalSettings, state: RetrievalState,
                 metrics: Metrics | None = None) -> None:
        self.metrics = metrics or Metrics("retrieval")
        self.settings = settings
        self.state = state

    def _current(self) -> Retriever:
        return self.state.retriever

    def _check_id(self, name: str, value: str, allow_empty: bool = False) -> None:
        if not value and not allow_empty:
            raise InvalidRequest(f"{name} is empty")
        if len(value) > self.settings.max_id_length:
            raise InvalidRequest(f"{name} longer than {self.settings.max_id_length} characters")
        if "\x00" in value:  # ids end up in the event log and in saved vocabularies
            raise InvalidRequest(f"{name} contains a NUL character")

    def _check_list(self, name: str, values) -> None:
        if len(values) > self.settings.max_list_items:
            raise InvalidRequest(f"{name} has more than {self.settings.max_list_items} entries")
        for v in values:
            self._check_id(name, v)

    def Retrieve(self, request, context):
        fields = {"user_id": request.user_id[:64]}

        def body():
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
            k = self._k(request.k)
            start = time.perf_counter()
            retriever = self._current()  # one version for the whole request
            result = retriever.retrieve(query)
            response = to_proto(result, retriever, k)
            response.timings_ms["total"] = (time.perf_counter() - start) * 1e3
            self.metrics.stages(response.timings_ms)
            fields.update(candidates=len(result.candidates),
                          segment=result.candidates.segment, version=result.version)
            return response
        return self._run("Retrieve", request, context, fields, body)

    def SimilarItems(self, request, context):
        fields = {"item_id": request.item_id[:64]}

        def body():
            self._check_id("item_id", request.item_id)
            k = self._k(request.k)
            retriever = self._current()
            idx, scores = retriever.similar_items(request.item_id, k)
            catalog = retriever.models.catalog
            response = retrieval_pb2.SimilarItemsResponse(version=retriever.version)
            for i, s in zip(idx.tolist(), scores.tolist(), strict=True):
                response.items.add(item=item_proto(catalog, i), score=s)
            fields["items"] = len(response.items)
            return response
        return self._run("SimilarItems", request, context, fields, body)

    def _text(self, name: str, value: str, allow_empty: bool = True) -> str:
        if not value.strip() and not allow_empty:
            raise InvalidRequest(f"{name} is empty")
        if len(value) > self.settings.max_text_length:
            raise InvalidRequest(f"{name} longer than {self.settings.max_text_length} characters")
        if "\x00" in value:
            raise InvalidRequest(f"{name} contains a NUL character")
        self._check_runs(name, value)
        return value

    @staticmethod
    def _check_runs(name: str, value: str) -> None:
        # Folding (as the search index does) joins "e\u0301e\u0301" into "ee" and expands
        # "\u3300" into four letters, so runs are measured after it too.
        if any(len(run) > MAX_RUN_LENGTH for form in (value, fold(value))
               for run in _RUN.findall(form)):
            raise InvalidRequest(f"{name} has a word or a whitespace run longer than "
                                 f"{MAX_RUN_LENGTH} characters")

    def _k(self, k: int) -> int:
        k = k or 10
        if k < 0 or k > self.settings.max_k:
            raise InvalidRequest(f"k must be in [1, {self.settings.max_k}], got {k}")
        return k

    def _run(self, rpc: str, request, context, fields: dict, body):
        """Common edge: request id, one log line, typed errors to status codes."""
        start = time.perf_counter()
        fields.update(rpc=rpc, request_id=getattr(request, "request_id", "") or new_request_id())
        try:
            response = body()
            fields["code"] = "OK"
            return response
        except RetrievalError as exc:
            fields.update(code=_CODES[type(exc)].name, error=str(exc))
            context.abort(_CODES[type(exc)], str(exc))
        finally:
            fields["ms"] = round((time.perf_counter() - start) * 1e3, 3)
            self.metrics.request(rpc, fields.get("code", "UNKNOWN"), fields["ms"])
            logger.info("request", extra={"fields": fields})

    def RecordInteraction(self, request, context):
        def body():
            self._check_id("user_id", request.user_id)
            self._check_id("item_id", request.item_id)
            weight = request.weight or 1.0
            if not math.isfinite(weight) or abs(weight) > 1e6:
                raise InvalidRequest(f"weight must be finite and at most 1e6, got {weight}")
            now = int(time.time())
            if request.timestamp < 0 or request.timestamp > now + MAX_FUTURE_S:
                raise InvalidRequest(f"timestamp must be in [0, now + {MAX_FUTURE_S}s], got "
                                     f"{request.timestamp}")
            ts = request.timestamp or now
            seq, n = self.state.record_interaction(request.user_id, request.item_id, weight, ts)
            return retrieval_pb2.RecordInteractionResponse(sequence=seq, history_length=n)
        return self._run("RecordInteraction", request, context,
                         {"user_id": request.user_id[:64], "item_id": request.item_id[:64]},
                         body)

    def UpsertItem(self, request, context):
        def body():
            self._check_id("item_id", request.item_id)
            title = self._text("title", request.title, allow_empty=False)
            self._check_list("categories", request.categories)
            for category in request.categories:
                self._check_runs("categories", category)
            text = self._text("text", request.text)
            seq, created = self.state.upsert_item(request.item_id, title,
                                                  list(request.categories), text)
            return retrieval_pb2.UpsertItemResponse(created=created, sequence=seq)
        return self._run("UpsertItem", request, context, {"item_id": request.item_id[:64]},
                         body)

    def SearchItems(self, request, context):
        def body():
            query = request.query
            if not query.strip():
                raise InvalidRequest("query is empty")
            if len(query) > self.settings.max_query_length:
                raise InvalidRequest(
                    f"query longer than {self.settings.max_query_length} characters")
            if "\x00" in query:
                raise InvalidRequest("query contains a NUL character")
            k = self._k(request.k)
            retriever = self._current()
            idx, scores, fuzzy = retriever.search(query, k)
            response = retrieval_pb2.SearchItemsResponse(fuzzy=fuzzy, version=retriever.version)
            for i, s in zip(idx.tolist(), scores.tolist(), strict=True):
                response.items.add(item=item_proto(retriever.models.catalog, i), score=s)
            return response
        return self._run("SearchItems", request, context, {"query": request.query[:64]}, body)


def item_proto(catalog, idx: int) -> common_pb2.Item:
    return common_pb2.Item(item_id=catalog.vocab.id(idx), title=catalog.titles[idx],
                           categories=catalog.categories[idx])


def to_proto(result: Retrieved, retriever: Retriever, k: int) -> retrieval_pb2.RetrieveResponse:
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
    cols = response.candidates
    cols.item_ids.extend(catalog.vocab.ids(c.items))
    cols.retrieval_scores.extend(c.retrieval_score.tolist())
    cols.als_scores.extend(c.als_score.tolist())
    cols.taste_scores.extend(c.taste_score.tolist())
    cols.generators.extend(GENERATORS)
    cols.generator_scores.extend(c.gen_scores.ravel().tolist())
    cols.generator_ranks.extend(c.gen_ranks.ravel().tolist())
    items = c.items.tolist()
    touched = retriever.touched
    described = items[:k] + ([i for i in items[k:] if i in touched] if touched else [])
    response.items.extend(item_proto(catalog, i) for i in described)
    return response
