"""Gateway gRPC service: Recommend = retrieval, then ranking, within one deadline.

If ranking is down, fails or is late, retrieval's order is served and flagged ``degraded``.
If retrieval fails, there is nothing sensible to serve: the call fails fast with its status.
Business rules (``common.rules``) are checked here before any upstream call, applied by ranking
on the ranked path and here on the degraded one, so a rule holds whichever path served.

Protobuf <-> upstream calls only: the request id, the log line, metrics and the mapping of
typed errors to status codes are the gRPC edge's (``shortlist.common.edge``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import grpc
import numpy as np

from shortlist.common import edge, validation
from shortlist.common.eventid import later
from shortlist.common.rules import (
    Rule,
    pins,
    place_pins,
    read_rules,
    score_rules,
)
from shortlist.gateway.errors import InvalidRequest, UpstreamFailed
from shortlist.gateway.settings import GatewaySettings
from shortlist.gateway.upstream import Upstream
from shortlist.gateway.writes import RecentWrites
from shortlist.v1 import gateway_pb2, gateway_pb2_grpc, ranking_pb2, retrieval_pb2

# Statuses from retrieval that describe the caller's request and are passed through as is.
_PASS_THROUGH = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                 grpc.StatusCode.RESOURCE_EXHAUSTED}
# SetVersion also passes FAILED_PRECONDITION through (a fixed *_VERSION setting, a version that
# fails verification): retrying cannot help, so it must not look like UNAVAILABLE.
_ADMIN_PASS_THROUGH = _PASS_THROUGH | {grpc.StatusCode.FAILED_PRECONDITION}
# Ranking's log-odds base for an order that is not the ranker's (ranking.pipeline): the
# reciprocal-rank constant of retrieval's merge. The degraded path uses the same, so a boost
# moves an item as far whichever path serves the request.
_RRF_K = 60.0


class GatewayService(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, settings: GatewaySettings, upstream: Upstream) -> None:
        self.settings = settings
        self.upstream = upstream
        self.recent_writes = RecentWrites(settings.read_your_writes_users,
                                          settings.read_your_writes_s)

    def _check_id(self, name: str, value: str) -> None:
        validation.check_id(name, value, self.settings.max_id_length)

    def _k(self, k: int) -> int:
        return validation.check_k(k, self.settings.default_k, self.settings.max_k)

    @staticmethod
    def _upstream_error(who: str, exc: grpc.RpcError,
                        pass_through=_PASS_THROUGH) -> UpstreamFailed:
        code = exc.code()
        if code in pass_through:
            return UpstreamFailed(code.name, exc.details() or code.name)
        return UpstreamFailed("UNAVAILABLE", f"{who} unavailable ({code.name}): {exc.details()}")

    @staticmethod
    def _timeout(context, timeout_s: float) -> float:
        """The upstream call's deadline: its own limit, within what the caller left us."""
        remaining = context.time_remaining()
        return max(0.001, min(timeout_s, remaining if remaining is not None else 1e9))

    def Recommend(self, request, context):
        start = time.perf_counter()
        rid = edge.request_id()
        edge.annotate(user_id=request.user_id[:64])
        s = self.settings
        self._check_id("user_id", request.user_id)
        k = self._k(request.k)
        validation.check_ids("recent_item_ids", request.recent_item_ids, s.max_list_items,
                             s.max_id_length)
        validation.check_filters(request.filters, s.max_list_items, s.max_id_length)
        validation.check_attributes("user_attributes", request.user_attributes,
                                    s.max_list_items, s.max_id_length)
        rules = read_rules(request.rules)  # before any upstream call: nothing half-done
        if rules:
            edge.annotate(rules=len(rules))
        deadline = start + self._timeout(context, s.request_timeout_s)
        try:  # read your writes: the caller's token or the latest write forwarded here
            after = later(request.after_event_id, self.recent_writes.latest(request.user_id))
        except ValueError as exc:
            raise InvalidRequest(f"after_event_id: {exc}") from exc

        # 0 leaves the count to the artifact (what tuning chose); a setting overrides it.
        n_candidates = max(s.candidates, k) if s.candidates else 0
        t0 = time.perf_counter()
        try:
            retrieved = self.upstream.retrieval.Retrieve(
                retrieval_pb2.RetrieveRequest(
                    user_id=request.user_id, recent_item_ids=request.recent_item_ids,
                    filters=request.filters, max_candidates=n_candidates,
                    request_id=rid, k=k, after_event_id=after,
                    user_attributes=request.user_attributes),
                timeout=max(0.001, min(s.retrieval_timeout_s, deadline - t0)),
            )
        except grpc.RpcError as exc:
            raise self._upstream_error("retrieval", exc) from exc
        retrieval_ms = (time.perf_counter() - t0) * 1e3

        ranked, ranking_ms, degrade_reason = None, 0.0, ""
        # Ranking also places pins when nothing else is left, and describes the pinned items.
        if retrieved.candidates.item_ids or pins(rules):
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
                                                version=retrieved.version,
                                                rules=request.rules,
                                                # a second pass over the trees: only when
                                                # someone reads the answer's provenance
                                                explain=request.explain),
                        timeout=min(s.ranking_timeout_s, left),
                    )
                except grpc.RpcError as exc:
                    degrade_reason = f"ranking {exc.code().name}: {exc.details()}"
            ranking_ms = (time.perf_counter() - t0) * 1e3

        response = assemble(retrieved, ranked, k, request.debug, rules, request.explain)
        response.request_id = rid
        response.degraded = bool(degrade_reason)
        total_ms = (time.perf_counter() - start) * 1e3
        t = response.timings_ms
        t["total"], t["retrieval"] = total_ms, retrieval_ms
        t["ranking"] = ranking_ms
        t["gateway"] = max(0.0, total_ms - retrieval_ms - ranking_ms)
        # Upstream stages under dotted names: the edge leaves those to the upstream's metrics.
        if request.debug:
            for key, ms in retrieved.timings_ms.items():
                t[f"retrieval.{key}"] = ms
        if ranked is not None and request.debug:
            for key, ms in ranked.timings_ms.items():
                t[f"ranking.{key}"] = ms
        edge.annotate(k=k, returned=len(response.items), degraded=response.degraded,
                      version=response.version, segment=retrieved.user.segment,
                      configuration=response.configuration)
        if degrade_reason:
            edge.annotate(degrade_reason=degrade_reason)
        return response

    def _forward(self, call, request, context, timeout_s: float, who: str = "retrieval",
                 pass_through=_PASS_THROUGH):
        """Pass one (checked) request to an upstream with a deadline and this request's id;
        its failure becomes UpstreamFailed."""
        if hasattr(request, "request_id"):
            request.request_id = edge.request_id()
        try:
            return call(request, timeout=self._timeout(context, timeout_s))
        except grpc.RpcError as exc:
            raise self._upstream_error(who, exc, pass_through) from exc

    def SimilarItems(self, request, context):
        edge.annotate(item_id=request.item_id[:64])
        self._check_id("item_id", request.item_id)
        request.k = self._k(request.k)
        return self._forward(self.upstream.retrieval.SimilarItems, request, context,
                             self.settings.retrieval_timeout_s)

    def SearchItems(self, request, context):
        edge.annotate(query=request.query[:64])
        request.k = self._k(request.k)
        return self._forward(self.upstream.retrieval.SearchItems, request, context,
                             self.settings.retrieval_timeout_s)

    def RecordInteraction(self, request, context):
        # Durability is retrieval's: it acknowledges only after the event log is synced.
        edge.annotate(user_id=request.user_id[:64], item_id=request.item_id[:64])
        response = self._forward(self.upstream.retrieval.RecordInteraction, request, context,
                                 self.settings.write_timeout_s)
        self.recent_writes.remember(request.user_id, response.event_id)
        return response

    def UpsertItem(self, request, context):
        edge.annotate(item_id=request.item_id[:64])
        return self._forward(self.upstream.retrieval.UpsertItem, request, context,
                             self.settings.write_timeout_s)

    def ListVersions(self, request, context):
        return self._forward(self.upstream.retrieval_admin.ListVersions, request, context,
                             self.settings.retrieval_timeout_s)

    def SetVersion(self, request, context):
        """Pin (or unpin) on retrieval, then on ranking: both serve the same version."""
        edge.annotate(version=request.version[:64])
        if request.version:
            validation.check_version_name(request.version)

        def both(req, timeout):
            response = self.upstream.retrieval_admin.SetVersion(req, timeout=timeout)
            try:
                self.upstream.ranking_admin.SetVersion(req, timeout=timeout)
            except grpc.RpcError as exc:
                raise self._upstream_error("ranking", exc, _ADMIN_PASS_THROUGH) from exc
            return response
        return self._forward(both, request, context, self.settings.admin_timeout_s,
                             pass_through=_ADMIN_PASS_THROUGH)


def degraded_order(retrieved: retrieval_pb2.RetrieveResponse, rules: Sequence[Rule],
                   k: int) -> list[tuple[int | None, str, list[str]]]:
    """Retrieval's order under the business rules, as ranking would apply them to an order
    that is not the ranker's: (candidate row, or None for a pinned item that was no
    candidate; item id; the rules that touched it).

    Retrieval describes (title, categories) only the first k candidates and those upserted
    since the version was published, so a category rule can match only those. A boost or
    burial of a category therefore moves only described items; a category exclusion also
    drops every undescribed candidate, which cannot be shown to lie outside the category: a
    shorter degraded list rather than an excluded item served.
    """
    ids = list(retrieved.candidates.item_ids)
    if not rules:
        return [(row, ids[row], []) for row in range(min(k, len(ids)))]
    details = {it.item_id: it for it in retrieved.items}
    scored = score_rules(rules, ids, [details[i].categories if i in details else ()
                                      for i in ids])
    keep = scored.keep
    if any(r.action == "EXCLUDE" and r.category for r in rules):
        keep = keep & np.fromiter((i in details for i in ids), bool, len(ids))
    pinned = pins(rules)
    rows = np.flatnonzero(keep)
    # log-odds of the order left after exclusions, shifted by the boosts and burials
    odds = -np.log(_RRF_K + np.arange(len(rows))) + scored.shift[rows]
    rows = rows[np.argsort(-odds, kind="stable")][:k + len(pinned)].tolist()
    notes = {ids[row]: list(scored.notes[row]) for row in rows if scored.notes[row]}
    for rule in pinned:
        notes.setdefault(rule.item_id, []).append(rule.describe())
    order = place_pins([ids[row] for row in rows], [(r.item_id, r.position) for r in pinned],
                       k)
    row_of = {item_id: row for row, item_id in enumerate(ids)}  # a pin may be any candidate
    return [(row_of.get(item), item, notes.get(item, [])) for item in order]


def assemble(retrieved: retrieval_pb2.RetrieveResponse, ranked: ranking_pb2.RankResponse | None,
             k: int, debug: bool, rules: Sequence[Rule] = (),
             explain: bool = False) -> gateway_pb2.RecommendResponse:
    """Join ranking's order with retrieval's signals; retrieval's order under ``rules`` if not
    ranked (ranking applied them itself otherwise).

    Item details come from retrieval when it described the item (the first k, and anything
    upserted since the version was published), else from ranking's catalog. A pinned item
    that was no candidate has no retrieval rank nor sources; served degraded, nothing but its
    id is known of it. Ranking's explanations (contributions, because_of_item_id) are passed
    on with ``explain`` only, the one case in which they were asked for.
    """
    response = gateway_pb2.RecommendResponse(segment=retrieved.user.segment)
    cols = retrieved.candidates
    ids = list(cols.item_ids)
    row_of = {item_id: row for row, item_id in enumerate(ids)}
    details = {it.item_id: it for it in retrieved.items}
    if ranked is not None:
        response.version = ranked.version
        response.configuration = ranked.configuration
        # Ranking returns candidates, and pinned items whether candidates or not.
        pinned = {r.item_id for r in pins(rules)}
        rows = [(row_of.get(r.item_id), r.item_id, r.score, r.rank, r, r.rules)
                for r in ranked.items if r.item_id in row_of or r.item_id in pinned]
    else:
        response.version = retrieved.version
        response.configuration = "retrieval"
        rows = [(row, item_id, cols.retrieval_scores[row] if row is not None else 0.0, 0,
                 None, notes) for row, item_id, notes in degraded_order(retrieved, rules, k)]
    generators = list(cols.generators)
    n_gen = len(generators)
    for row, item_id, score, rank, ranked_item, notes in rows[:k]:
        described = details.get(item_id) or ranked_item
        item = response.items.add(
            item_id=item_id, score=score,
            title=described.title if described is not None else "",
            categories=described.categories if described is not None else [],
            retrieval_rank=row + 1 if row is not None else 0, ranking_rank=rank,
        )
        if debug:
            item.rules.extend(notes)
        if explain and ranked_item is not None:  # served degraded, nothing explains the order
            item.contributions.extend(ranked_item.contributions)
            item.because_of_item_id = ranked_item.because_of_item_id
        if row is None:
            continue
        for g in range(n_gen):
            g_rank = cols.generator_ranks[row * n_gen + g]
            if g_rank > 0:
                src = item.sources.add(generator=generators[g], rank=g_rank)
                if debug:
                    src.score = cols.generator_scores[row * n_gen + g]
    return response
