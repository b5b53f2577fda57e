"""Retrieval gRPC service: protobuf <-> domain translation, nothing else.

Typed errors (``retrieval.errors``, ``common.validation``) become status codes at the gRPC edge
(``shortlist.common.edge``), which also writes the request's log line and metrics; the state
(serving version, acknowledged writes) lives in ``retrieval.online``.
"""

from __future__ import annotations

import math
import re
import time

from shortlist.common import edge, validation
from shortlist.retrieval.errors import InvalidRequest
from shortlist.retrieval.online import RetrievalState
from shortlist.retrieval.retriever import ItemVerdict, Retrieved, RetrieveQuery, Retriever
from shortlist.retrieval.search import fold
from shortlist.retrieval.settings import RetrievalSettings
from shortlist.retrieval.shared import SharedState
from shortlist.v1 import common_pb2, retrieval_pb2, retrieval_pb2_grpc

# How far ahead of this server's clock an interaction's timestamp may be (clock skew): a
# timestamp beyond it would become the user's "now" and skew every time-aware feature.
MAX_FUTURE_S = 86400
# Longest run of letters/digits (a "word") or of whitespace in an item's title or text. The
# search index's tokenisers (retrieval/search/text.py: _COMPOUND in document_tokens,
# _YEAR_SUFFIX in title_keys) are quadratic in such a run, under the write and search locks:
# one 20,000-letter word took ~7 s to index, stalling every write and search meanwhile. 256
# keeps it under 0.1 s.
MAX_RUN_LENGTH = 256
_RUN = re.compile(r"[^\W_]+|\s+")
# k when a request leaves it at 0.
DEFAULT_K = 10


class RetrievalService(retrieval_pb2_grpc.RetrievalServicer):
    def __init__(self, settings: RetrievalSettings,
                 state: RetrievalState | SharedState) -> None:
        self.settings = settings
        self.state = state

    def _current(self) -> Retriever:
        return self.state.retriever

    def _check_id(self, name: str, value: str) -> None:
        # ids end up in the event log and in saved vocabularies
        validation.check_id(name, value, self.settings.max_id_length)

    def _check_list(self, name: str, values) -> None:
        validation.check_ids(name, values, self.settings.max_list_items,
                             self.settings.max_id_length)

    def _k(self, k: int) -> int:
        return validation.check_k(k, DEFAULT_K, self.settings.max_k)

    def _text(self, name: str, value: str, allow_empty: bool = True) -> str:
        validation.check_text(name, value, self.settings.max_text_length, allow_empty)
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

    def Retrieve(self, request, context):
        edge.annotate(user_id=request.user_id[:64])
        self._check_id("user_id", request.user_id)
        self._check_list("recent_item_ids", request.recent_item_ids)
        attributes = validation.check_attributes(
            "user_attributes", request.user_attributes, self.settings.max_list_items,
            self.settings.max_id_length)
        f = request.filters
        validation.check_filters(f, self.settings.max_list_items, self.settings.max_id_length)
        query = RetrieveQuery(
            user_id=request.user_id, recent_item_ids=list(request.recent_item_ids),
            exclude_item_ids=list(f.exclude_item_ids),
            include_categories=list(f.include_categories),
            exclude_categories=list(f.exclude_categories),
            max_candidates=request.max_candidates, k=self._k(request.k),
            user_attributes=attributes,
        )
        start = time.perf_counter()
        if request.after_event_id:  # read your write: wait until it is applied here
            self.state.wait_applied(request.after_event_id)
        waited_ms = (time.perf_counter() - start) * 1e3
        retriever = self._current()  # one version for the whole request
        result = retriever.retrieve(query)
        response = to_proto(result, retriever, query.k)
        if request.explain_item_id:
            self._check_id("explain_item_id", request.explain_item_id)
            explained = retriever.explain_item(query, request.explain_item_id,
                                               result.candidates)
            verdict_proto(explained, response.explained)
            catalog = retriever.models.catalog
            item = catalog.vocab.index(request.explain_item_id)
            if item >= 0 and not any(it.item_id == request.explain_item_id
                                     for it in response.items):
                response.items.append(item_proto(catalog, item))  # its categories, for rules
        if request.after_event_id:  # what read-your-writes cost this request
            response.timings_ms["wait"] = waited_ms
        response.timings_ms["total"] = (time.perf_counter() - start) * 1e3
        edge.annotate(candidates=len(result.candidates), segment=result.candidates.segment,
                      version=result.version)
        return response

    def SimilarItems(self, request, context):
        edge.annotate(item_id=request.item_id[:64])
        self._check_id("item_id", request.item_id)
        k = self._k(request.k)
        retriever = self._current()
        idx, scores = retriever.similar_items(request.item_id, k)
        catalog = retriever.models.catalog
        response = retrieval_pb2.SimilarItemsResponse(version=retriever.version)
        for i, s in zip(idx.tolist(), scores.tolist(), strict=True):
            response.items.add(item=item_proto(catalog, i), score=s)
        edge.annotate(items=len(response.items))
        return response

    def RecordInteraction(self, request, context):
        edge.annotate(user_id=request.user_id[:64], item_id=request.item_id[:64])
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
        if request.client_event_id:
            self._check_id("client_event_id", request.client_event_id)
        if request.event:
            edge.annotate(event_type=request.event[:64])
        # The type is checked (against the serving version's table) and normalised by the
        # state, before anything is logged: only it knows which version takes the write.
        seq, n, duplicate = self.state.record_interaction(
            request.user_id, request.item_id, weight, ts, request.client_event_id,
            request.event)
        edge.annotate(event=str(seq), duplicate=duplicate)
        return retrieval_pb2.RecordInteractionResponse(history_length=n, duplicate=duplicate,
                                                       **_position(seq))

    def UpsertItem(self, request, context):
        edge.annotate(item_id=request.item_id[:64])
        self._check_id("item_id", request.item_id)
        title = self._text("title", request.title, allow_empty=False)
        self._check_list("categories", request.categories)
        for category in request.categories:
            self._check_runs("categories", category)
        text = self._text("text", request.text)
        seq, created = self.state.upsert_item(request.item_id, title, list(request.categories),
                                              text)
        return retrieval_pb2.UpsertItemResponse(created=created, **_position(seq))

    def SearchItems(self, request, context):
        edge.annotate(query=request.query[:64])
        query = validation.check_text("query", request.query, self.settings.max_query_length,
                                      allow_empty=False)
        k = self._k(request.k)
        retriever = self._current()
        idx, scores, fuzzy = retriever.search(query, k)
        response = retrieval_pb2.SearchItemsResponse(fuzzy=fuzzy, version=retriever.version)
        for i, s in zip(idx.tolist(), scores.tolist(), strict=True):
            response.items.add(item=item_proto(retriever.models.catalog, i), score=s)
        return response


def _position(seq: int | str) -> dict:
    """A write's position: the embedded log's seq, or the shared stream's id (a string)."""
    return {"event_id": seq} if isinstance(seq, str) else {"sequence": seq}


def item_proto(catalog, idx: int) -> common_pb2.Item:
    return common_pb2.Item(item_id=catalog.vocab.id(idx), title=catalog.titles[idx],
                           categories=catalog.categories[idx])


def verdict_proto(verdict: ItemVerdict, out: common_pb2.ItemVerdict) -> None:
    out.status = common_pb2.ItemVerdict.Status.Value(verdict.status)
    out.reason = verdict.reason
    out.rank = verdict.rank
    out.candidates = verdict.candidates
    for name, rank, score in verdict.sources:
        out.sources.add(generator=name, rank=rank, score=score)


def to_proto(result: Retrieved, retriever: Retriever, k: int) -> retrieval_pb2.RetrieveResponse:
    c = result.candidates
    catalog = retriever.models.catalog
    response = retrieval_pb2.RetrieveResponse(version=result.version)
    response.user.user_id = result.user_id
    c.fill_proto(response.candidates, response.user, catalog.vocab.ids)
    for key, ms in c.timings_ms.items():
        response.timings_ms[key] = ms
    items = c.items.tolist()
    touched = retriever.touched
    described = items[:k] + ([i for i in items[k:] if i in touched] if touched else [])
    response.items.extend(item_proto(catalog, i) for i in described)
    return response
