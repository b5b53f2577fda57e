"""Gateway gRPC service: Recommend = retrieval, then ranking, within one deadline.

If ranking is down, fails or is late, retrieval's order is served and flagged ``degraded``.
If retrieval fails, there is nothing sensible to serve: the call fails fast with its status.
"""

from __future__ import annotations

import logging
import time

import grpc

from shortlist.common.logs import new_request_id
from shortlist.common.metrics import Metrics
from shortlist.gateway.errors import GatewayError, InvalidRequest, UpstreamFailed
from shortlist.gateway.settings import GatewaySettings
from shortlist.gateway.upstream import Upstream
from shortlist.v1 import gateway_pb2, gateway_pb2_grpc, ranking_pb2, retrieval_pb2

logger = logging.getLogger(__name__)

# Statuses from retrieval that describe the caller's request and are passed through as is.
_PASS_THROUGH = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                 grpc.StatusCode.RESOURCE_EXHAUSTED}
# SetVersion also passes FAILED_PRECONDITION through (a fixed *_VERSION setting, a version that
# fails verification): retrying cannot help, so it must not look like UNAVAILABLE.
_ADMIN_PASS_THROUGH = _PASS_THROUGH | {grpc.StatusCode.FAILED_PRECONDITION}
# Longest version name: one directory name under the artifact root (NAME_MAX, in bytes).
_MAX_VERSION_BYTES = 255


class GatewayService(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, settings: GatewaySettings, upstream: Upstream,
                 metrics: Metrics | None = None) -> None:
        self.metrics = metrics or Metrics("gateway")
        self.settings = settings
        self.upstream = upstream

    def _check_id(self, name: str, value: str) -> None:
        if not value:
            raise InvalidRequest(f"{name} is empty")
        if len(value) > self.settings.max_id_length:
            raise InvalidRequest(f"{name} longer than {self.settings.max_id_length} characters")
        if "\x00" in value:
            raise InvalidRequest(f"{name} contains a NUL character")

    def _check_list(self, name: str, values) -> None:
        if len(values) > self.settings.max_list_items:
            raise InvalidRequest(f"{name} has more than {self.settings.max_list_items} entries")
        for v in values:
            self._check_id(name, v)

    def _upstream_error(self, who: str, exc: grpc.RpcError,
                        pass_through=_PASS_THROUGH) -> UpstreamFailed:
        code = exc.code()
        if code in pass_through:
            return UpstreamFailed(code, exc.details() or code.name)
        return UpstreamFailed(grpc.StatusCode.UNAVAILABLE,
                              f"{who} unavailable ({code.name}): {exc.details()}")

    def Recommend(self, request, context):
        start = time.perf_counter()
        rid = new_request_id()
        fields = {"rpc": "Recommend", "request_id": rid, "user_id": request.user_id[:64]}
        try:
            s = self.settings
            self._check_id("user_id", request.user_id)
            k = request.k or s.default_k
            if k < 0 or k > s.max_k:
                raise InvalidRequest(f"k must be in [1, {s.max_k}], got {request.k}")
            self._check_list("recent_item_ids", request.recent_item_ids)
            for name in ("exclude_item_ids", "include_categories", "exclude_categories"):
                self._check_list(f"filters.{name}", getattr(request.filters, name))
            remaining = context.time_remaining()
            budget = min(s.request_timeout_s, remaining if remaining is not None else 1e9)
            deadline = start + budget

            t0 = time.perf_counter()
            try:
                retrieved = self.upstream.retrieval.Retrieve(
                    retrieval_pb2.RetrieveRequest(
                        user_id=request.user_id, recent_item_ids=request.recent_item_ids,
                        filters=request.filters, max_candidates=max(s.candidates, k),
                        request_id=rid, k=k),
                    timeout=max(0.001, min(s.retrieval_timeout_s, deadline - t0)),
                )
            except grpc.RpcError as exc:
                raise self._upstream_error("retrieval", exc) from exc
            retrieval_ms = (time.perf_counter() - t0) * 1e3

            ranked, ranking_ms, degrade_reason = None, 0.0, ""
            if retrieved.candidates.item_ids:
                t0 = time.perf_counter()
                left = deadline - t0
                if left <= 0.002:
                    degrade_reason = "no time left for ranking"
                else:
                    try:
                        ranked = self.upstream.ranking.Rank(
                            ranking_pb2.RankRequest(user=retrieved.user,
                                                    candidates=retrieved.candidates,
                                                    items=retrieved.items,
                                                    k=k, request_id=rid,
                                                    version=retrieved.version),
                            timeout=min(s.ranking_timeout_s, left),
                        )
                    except grpc.RpcError as exc:
                        degrade_reason = f"ranking {exc.code().name}: {exc.details()}"
                ranking_ms = (time.perf_counter() - t0) * 1e3

            response = assemble(retrieved, ranked, k, request.debug)
            response.request_id = rid
            response.degraded = bool(degrade_reason)
            total_ms = (time.perf_counter() - start) * 1e3
            t = response.timings_ms
            t["total"], t["retrieval"] = total_ms, retrieval_ms
            t["ranking"] = ranking_ms
            t["gateway"] = max(0.0, total_ms - retrieval_ms - ranking_ms)
            self.metrics.stages(t)
            if request.debug:
                for key, ms in retrieved.timings_ms.items():
                    t[f"retrieval.{key}"] = ms
            if ranked is not None and request.debug:
                for key, ms in ranked.timings_ms.items():
                    t[f"ranking.{key}"] = ms
            fields.update(code="OK", k=k, returned=len(response.items),
                          degraded=response.degraded, version=response.version,
                          segment=retrieved.user.segment)
            if degrade_reason:
                fields["degrade_reason"] = degrade_reason
            return response
        except GatewayError as exc:
            fields.update(code=exc.code.name, error=str(exc))
            context.abort(exc.code, str(exc))
        finally:
            fields["ms"] = round((time.perf_counter() - start) * 1e3, 3)
            self.metrics.request(fields["rpc"], fields.get("code", "UNKNOWN"), fields["ms"])
            logger.info("request", extra={"fields": fields})

    def _forward(self, rpc: str, call, request, context, fields: dict, timeout_s: float,
                 check=None, pass_through=_PASS_THROUGH):
        """Validate, pass one request to an upstream with a deadline, log one line."""
        start = time.perf_counter()
        rid = new_request_id()
        fields = {"rpc": rpc, "request_id": rid, **fields}
        try:
            if check is not None:
                check()
            if hasattr(request, "request_id"):
                request.request_id = rid
            remaining = context.time_remaining()
            timeout = min(timeout_s, remaining if remaining is not None else 1e9)
            try:
                response = call(request, timeout=max(0.001, timeout))
            except grpc.RpcError as exc:
                raise self._upstream_error("retrieval", exc, pass_through) from exc
            fields["code"] = "OK"
            return response
        except GatewayError as exc:
            fields.update(code=exc.code.name, error=str(exc))
            context.abort(exc.code, str(exc))
        finally:
            fields["ms"] = round((time.perf_counter() - start) * 1e3, 3)
            self.metrics.request(fields["rpc"], fields.get("code", "UNKNOWN"), fields["ms"])
            logger.info("request", extra={"fields": fields})

    def _k(self, request) -> None:
        k = request.k or self.settings.default_k
        if k < 0 or k > self.settings.max_k:
            raise InvalidRequest(f"k must be in [1, {self.settings.max_k}], got {request.k}")
        request.k = k

    def SimilarItems(self, request, context):
        def check():
            self._check_id("item_id", request.item_id)
            self._k(request)
        return self._forward("SimilarItems", self.upstream.retrieval.SimilarItems, request,
                             context, {"item_id": request.item_id[:64]},
                             self.settings.retrieval_timeout_s, check)

    def SearchItems(self, request, context):
        return self._forward("SearchItems", self.upstream.retrieval.SearchItems, request,
                             context, {"query": request.query[:64]},
                             self.settings.retrieval_timeout_s, lambda: self._k(request))

    def RecordInteraction(self, request, context):
        # Durability is retrieval's: it acknowledges only after the event log is synced.
        return self._forward("RecordInteraction", self.upstream.retrieval.RecordInteraction,
                             request, context, {"user_id": request.user_id[:64],
                                                "item_id": request.item_id[:64]},
                             self.settings.write_timeout_s)

    def UpsertItem(self, request, context):
        return self._forward("UpsertItem", self.upstream.retrieval.UpsertItem, request,
                             context, {"item_id": request.item_id[:64]},
                             self.settings.write_timeout_s)

    def ListVersions(self, request, context):
        return self._forward("ListVersions", self.upstream.retrieval_admin.ListVersions,
                             request, context, {}, self.settings.retrieval_timeout_s)

    def SetVersion(self, request, context):
        """Pin (or unpin) on retrieval, then on ranking: both serve the same version."""
        def check():
            v = request.version
            if v and (v.startswith(".") or any(c in v for c in "/\\\x00")
                      or len(v.encode()) > _MAX_VERSION_BYTES):
                raise InvalidRequest(f"not a version name: {v[:64]!r}")

        def both(req, timeout):
            response = self.upstream.retrieval_admin.SetVersion(req, timeout=timeout)
            try:
                self.upstream.ranking_admin.SetVersion(req, timeout=timeout)
            except grpc.RpcError as exc:
                raise self._upstream_error("ranking", exc, _ADMIN_PASS_THROUGH) from exc
            return response
        return self._forward("SetVersion", both, request, context,
                             {"version": request.version[:64]}, self.settings.admin_timeout_s,
                             check, _ADMIN_PASS_THROUGH)


def assemble(retrieved: retrieval_pb2.RetrieveResponse, ranked: ranking_pb2.RankResponse | None,
             k: int, debug: bool) -> gateway_pb2.RecommendResponse:
    """Join ranking's order with retrieval's signals; retrieval order if not ranked.

    Item details come from retrieval when it described the item (the first k, and anything
    upserted since the version was published), else from ranking's catalog.
    """
    response = gateway_pb2.RecommendResponse(segment=retrieved.user.segment)
    cols = retrieved.candidates
    ids = list(cols.item_ids)
    row_of = {item_id: row for row, item_id in enumerate(ids)}
    details = {it.item_id: it for it in retrieved.items}
    if ranked is not None:
        response.version = ranked.version
        rows = [(row_of[r.item_id], r.score, r.rank, r) for r in ranked.items
                if r.item_id in row_of]
    else:
        response.version = retrieved.version
        rows = [(row, cols.retrieval_scores[row], 0, None) for row in range(min(k, len(ids)))]
    generators = list(cols.generators)
    n_gen = len(generators)
    for row, score, rank, ranked_item in rows[:k]:
        item_id = ids[row]
        described = details.get(item_id) or ranked_item
        item = response.items.add(
            item_id=item_id, score=score,
            title=described.title if described is not None else "",
            categories=described.categories if described is not None else [],
            retrieval_rank=row + 1, ranking_rank=rank,
        )
        for g in range(n_gen):
            g_rank = cols.generator_ranks[row * n_gen + g]
            if g_rank > 0:
                src = item.sources.add(generator=generators[g], rank=g_rank)
                if debug:
                    src.score = cols.generator_scores[row * n_gen + g]
    return response
