"""Gateway gRPC service: Recommend = retrieval, then ranking, within one deadline.

If ranking is down, fails or is late, retrieval's order is served and flagged ``degraded``.
If retrieval fails, there is nothing sensible to serve: the call fails fast with its status.
Business rules (``common.rules``) are checked here before any upstream call, applied by ranking
on the ranked path and here on the degraded one, so a rule holds whichever path served.

Protobuf <-> upstream calls only: the request id, the log line, metrics and the mapping of
typed errors to status codes are the gRPC edge's (``shortlist.common.edge``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass

import grpc
import numpy as np

from shortlist.common import edge, validation
from shortlist.common.eventid import later
from shortlist.common.impressions import Impression, ImpressionLog, Outcome, ShadowScore
from shortlist.common.rules import (
    MAX_RULES,
    Rule,
    pins,
    place_pins,
    read_rules,
    score_rules,
)
from shortlist.gateway.errors import InvalidRequest, UpstreamFailed, VariantVersionMismatch
from shortlist.gateway.experiment_metrics import ExperimentMetrics
from shortlist.gateway.experiments import Experiments, Plan, Variant
from shortlist.gateway.explain import (
    FROM_RETRIEVAL,
    Status,
    Verdict,
    describe,
    retrieval_reason,
)
from shortlist.gateway.interleave import team_draft
from shortlist.gateway.settings import GatewaySettings
from shortlist.gateway.shadow import ShadowJob, ShadowResult, ShadowScorer
from shortlist.gateway.upstream import UpstreamPool
from shortlist.gateway.writes import RecentWrites
from shortlist.v1 import (
    admin_pb2,
    experiment_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    ranking_pb2,
    retrieval_pb2,
)

logger = logging.getLogger(__name__)

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


@dataclass
class Served:
    """One variant's answer to one request, with what the log line and metrics need."""

    response: gateway_pb2.RecommendResponse
    retrieval_ms: float
    ranking_ms: float
    degrade_reason: str
    segment: int
    retrieval_timings: Mapping[str, float]
    ranking_timings: Mapping[str, float]


class GatewayService(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, settings: GatewaySettings, upstreams: UpstreamPool,
                 experiments: Experiments | None = None,
                 metrics: ExperimentMetrics | None = None,
                 impressions: ImpressionLog | None = None) -> None:
        self.settings = settings
        self.upstreams = upstreams
        self.upstream = upstreams.default
        self.recent_writes = RecentWrites(settings.read_your_writes_users,
                                          settings.read_your_writes_s)
        self.experiments = experiments or Experiments()
        self.metrics = metrics
        self.impressions = impressions
        self.shadow = ShadowScorer(settings.shadow_queue, self._shadow_scored,
                                   self._shadow_event, settings.shadow_duty_cycle)
        # Interleaving asks both arms at once: the second arm's calls run here.
        self._arms = futures.ThreadPoolExecutor(max_workers=max(1, settings.max_workers // 2),
                                                thread_name_prefix="arm")

    def close(self) -> None:
        self.shadow.close()
        self._arms.shutdown(wait=False, cancel_futures=True)

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
        plan = self.experiments.plan  # read once: one request sees one experiment
        variant = (plan.variant(request.variant) if request.variant
                   else plan.assign(request.user_id))
        deadline = start + self._timeout(context, s.request_timeout_s)
        try:  # read your writes: the caller's token or the latest write forwarded here
            after = later(request.after_event_id, self.recent_writes.latest(request.user_id))
        except ValueError as exc:
            raise InvalidRequest(f"after_event_id: {exc}") from exc

        if variant.interleave:
            served = self._interleave(plan, variant, request, k, rules, deadline, rid, after)
        else:
            served = self._serve(variant, request, k, rules, deadline, rid, after,
                                 request.debug, request.explain)
        response = served.response
        response.request_id = rid
        response.variant = variant.name
        response.degraded = bool(served.degrade_reason)
        total_ms = (time.perf_counter() - start) * 1e3
        t = response.timings_ms
        t["total"], t["retrieval"] = total_ms, served.retrieval_ms
        t["ranking"] = served.ranking_ms
        t["gateway"] = max(0.0, total_ms - served.retrieval_ms - served.ranking_ms)
        # Upstream stages under dotted names: the edge leaves those to the upstream's metrics.
        if request.debug:
            for key, ms in served.retrieval_timings.items():
                t[f"retrieval.{key}"] = ms
            for key, ms in served.ranking_timings.items():
                t[f"ranking.{key}"] = ms
        edge.annotate(k=k, returned=len(response.items), degraded=response.degraded,
                      version=response.version, segment=served.segment,
                      configuration=response.configuration, variant=variant.name)
        if plan.running:
            edge.annotate(experiment=plan.name)
        if served.degrade_reason:
            edge.annotate(degrade_reason=served.degrade_reason)
        if self.metrics is not None:
            self.metrics.served(variant.name, response.degraded, total_ms)
        self._log_impression(plan.name, request.user_id, response)
        if plan.shadowed(rid) and not variant.interleave and not self.shadow.resting:
            self._offer_shadow(plan, variant, request, k, rid, after, response)
        return response

    def _variant_rules(self, variant: Variant, rules: Sequence[Rule], request
                       ) -> tuple[list[Rule], list]:
        """The variant's rules before the request's own, as rules and as messages."""
        if not variant.rules:
            return list(rules), list(request.rules)
        if len(variant.rules) + len(rules) > MAX_RULES:
            raise InvalidRequest(f"variant {variant.name} adds {len(variant.rules)} rules: "
                                 f"at most {MAX_RULES - len(variant.rules)} per request")
        return [*variant.rules, *rules], [*variant.rule_messages, *request.rules]

    def _retrieve_request(self, variant: Variant, request, k: int, rid: str, after: str,
                          explain_item_id: str = "") -> retrieval_pb2.RetrieveRequest:
        # 0 leaves the count to the artifact (what tuning chose); a setting overrides it.
        wanted = variant.candidates or self.settings.candidates
        return retrieval_pb2.RetrieveRequest(
            user_id=request.user_id, recent_item_ids=request.recent_item_ids,
            filters=request.filters, max_candidates=max(wanted, k) if wanted else 0,
            request_id=rid, k=k, after_event_id=after, user_attributes=request.user_attributes,
            explain_item_id=explain_item_id)

    @staticmethod
    def _rank_request(variant: Variant, retrieved: retrieval_pb2.RetrieveResponse, k: int,
                      rid: str, rule_messages: Sequence, explain: bool
                      ) -> ranking_pb2.RankRequest:
        rank_request = ranking_pb2.RankRequest(
            user=retrieved.user, candidates=retrieved.candidates, items=retrieved.items, k=k,
            request_id=rid, version=retrieved.version, rules=rule_messages, order=variant.order,
            # a second pass over the trees: only when someone reads the answer's provenance
            explain=explain)
        if variant.mmr_lambda is not None:
            rank_request.mmr_lambda = variant.mmr_lambda
        return rank_request

    def _serve(self, variant: Variant, request, k: int, rules: Sequence[Rule],
               deadline: float, rid: str, after: str, debug: bool, explain: bool) -> Served:
        """Retrieval, then ranking, as ``variant`` says (its upstream, candidate count, order,
        MMR setting and rules before the request's own)."""
        s = self.settings
        upstream = self.upstreams.get(variant.retrieval_target, variant.ranking_target)
        rules, rule_messages = self._variant_rules(variant, rules, request)
        t0 = time.perf_counter()
        try:
            retrieved = upstream.retrieval.Retrieve(
                self._retrieve_request(variant, request, k, rid, after),
                timeout=max(0.001, min(s.retrieval_timeout_s, deadline - t0)))
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
                    ranked = upstream.ranking.Rank(
                        self._rank_request(variant, retrieved, k, rid, rule_messages, explain),
                        timeout=min(s.ranking_timeout_s, left))
                except grpc.RpcError as exc:
                    degrade_reason = f"ranking {exc.code().name}: {exc.details()}"
            ranking_ms = (time.perf_counter() - t0) * 1e3
        response = assemble(retrieved, ranked, k, debug, rules, explain)
        return Served(response, retrieval_ms, ranking_ms, degrade_reason,
                      retrieved.user.segment, retrieved.timings_ms,
                      ranked.timings_ms if ranked is not None else {})

    # ---- explanations ----

    def Explain(self, request, context):
        """Recommend's path, explained: the top k, or one item wherever it ended up. Never
        degraded: an explanation of retrieval's fallback order would explain nothing."""
        rid = edge.request_id()
        edge.annotate(user_id=request.user_id[:64], item_id=request.item_id[:64])
        s = self.settings
        self._check_id("user_id", request.user_id)
        if request.item_id:
            self._check_id("item_id", request.item_id)
        k = self._k(request.k)
        validation.check_ids("recent_item_ids", request.recent_item_ids, s.max_list_items,
                             s.max_id_length)
        validation.check_filters(request.filters, s.max_list_items, s.max_id_length)
        validation.check_attributes("user_attributes", request.user_attributes,
                                    s.max_list_items, s.max_id_length)
        rules = read_rules(request.rules)
        plan = self.experiments.plan
        variant = (plan.variant(request.variant) if request.variant
                   else plan.assign(request.user_id))
        if variant.interleave:  # an interleaved list is two lists: explain the first arm's
            variant = plan.variant(variant.arms[0])
        rules, rule_messages = self._variant_rules(variant, rules, request)
        upstream = self.upstreams.get(variant.retrieval_target, variant.ranking_target)
        timeout = self._timeout(context, s.admin_timeout_s)
        after = self.recent_writes.latest(request.user_id)
        try:
            retrieved = upstream.retrieval.Retrieve(
                self._retrieve_request(variant, request, k, rid, after, request.item_id),
                timeout=timeout)
        except grpc.RpcError as exc:
            raise self._upstream_error("retrieval", exc) from exc
        n_cands = len(retrieved.candidates.item_ids)

        def ranked(n: int) -> gateway_pb2.RecommendResponse:
            try:
                answer = upstream.ranking.Rank(
                    self._rank_request(variant, retrieved, n, rid, rule_messages, True),
                    timeout=timeout)
            except grpc.RpcError as exc:
                raise self._upstream_error("ranking", exc) from exc
            return assemble(retrieved, answer, n, True, rules, True)

        served = ranked(k)
        response = gateway_pb2.ExplainResponse(
            variant=variant.name, version=served.version, configuration=served.configuration,
            segment=retrieved.user.segment, request_id=rid, k=k)
        if not request.item_id:
            for item in served.items:
                response.items.add(item_id=item.item_id, verdict=Verdict.RECOMMENDED,
                                   reason=describe(item, n_cands, k), item=item,
                                   retrieval=retrieved.explained)
            edge.annotate(variant=variant.name, explained=len(response.items))
            return response
        verdict = retrieved.explained
        found = next((it for it in served.items if it.item_id == request.item_id), None)
        out = response.items.add(item_id=request.item_id, retrieval=verdict)
        if found is not None:
            out.verdict = Verdict.RECOMMENDED
            out.item.CopyFrom(found)
            out.reason = describe(found, n_cands, k)
        elif verdict.status == Status.CANDIDATE:
            everything = ranked(n_cands + len(pins(rules)))
            found = next((it for it in everything.items if it.item_id == request.item_id),
                         None)
            if found is not None:
                out.verdict = Verdict.RANKED_BELOW_K
                out.item.CopyFrom(found)
                out.reason = f"ranked below the top {k}: " + describe(found, n_cands, k, True)
            else:
                out.verdict = Verdict.FILTERED
                touched = [r.describe() for r in rules if r.action == "EXCLUDE" and (
                    r.item_id == request.item_id or r.category in verdict_categories(
                        retrieved, request.item_id))]
                out.reason = ("excluded by a business rule: " + "; ".join(touched)
                              if touched else "left out by ranking (an exclusion rule)")
        else:
            out.verdict = FROM_RETRIEVAL.get(verdict.status, Verdict.VERDICT_UNSPECIFIED)
            out.reason = retrieval_reason(verdict)
        edge.annotate(variant=variant.name,
                      verdict=Verdict.Verdict.Name(out.verdict).lower())
        return response

    def _interleave(self, plan: Plan, variant: Variant, request, k: int, rules: Sequence[Rule],
                    deadline: float, rid: str, after: str) -> Served:
        """Both arms at once (the second on a worker thread), merged by team draft; each item
        names the arm that contributed it. Each arm is asked for k items, enough for any
        draft of k."""
        arm_a, arm_b = (plan.variant(name) for name in variant.arms)
        other = self._arms.submit(self._serve, arm_b, request, k, rules, deadline, rid, after,
                                  request.debug, request.explain)
        a = self._serve(arm_a, request, k, rules, deadline, rid, after, request.debug,
                        request.explain)
        b = other.result()
        by_id = ({it.item_id: it for it in a.response.items},
                 {it.item_id: it for it in b.response.items})
        drafted = team_draft([it.item_id for it in a.response.items],
                             [it.item_id for it in b.response.items], k, rid)
        response = gateway_pb2.RecommendResponse(segment=a.response.segment)
        for item_id, arm in drafted:
            added = response.items.add()
            added.CopyFrom(by_id[arm][item_id])
            added.team = (arm_a, arm_b)[arm].name
        versions = dict.fromkeys([a.response.version, b.response.version])
        response.version = "+".join(versions)
        response.configuration = (f"interleave({a.response.configuration},"
                                  f"{b.response.configuration})")
        reasons = [f"{v.name}: {x.degrade_reason}" for v, x in ((arm_a, a), (arm_b, b))
                   if x.degrade_reason]
        return Served(response, max(a.retrieval_ms, b.retrieval_ms),
                      max(a.ranking_ms, b.ranking_ms), "; ".join(reasons), a.segment,
                      a.retrieval_timings, a.ranking_timings)

    # ---- impressions and shadows: off the request's path, never failing it ----

    def _log_impression(self, experiment: str, user_id: str,
                        response: gateway_pb2.RecommendResponse) -> None:
        if self.impressions is None:
            return
        items = tuple(it.item_id for it in response.items)
        teams = tuple(it.team for it in response.items) if any(
            it.team for it in response.items) else ()
        queued = self.impressions.record(Impression(
            response.request_id, user_id, experiment, response.variant, response.version,
            response.configuration, response.degraded, items, teams, time.time()))
        if self.metrics is not None:
            self.metrics.impression(queued)

    def _offer_shadow(self, plan: Plan, served: Variant, request, k: int, rid: str,
                      after: str, response: gateway_pb2.RecommendResponse) -> None:
        shadow = plan.shadow
        assert shadow is not None
        budget = self.settings.request_timeout_s
        rules = read_rules(request.rules)

        def score() -> list[str]:
            result = self._serve(shadow, request, k, rules, time.perf_counter() + budget,
                                 f"{rid}/shadow", after, False, False)
            if result.degrade_reason:  # a degraded shadow measures retrieval, not the shadow
                raise UpstreamFailed("UNAVAILABLE", result.degrade_reason)
            return [it.item_id for it in result.response.items]

        self.shadow.submit(ShadowJob(rid, plan.name, served.name,
                                     tuple(it.item_id for it in response.items), score,
                                     shadow.name))

    def _shadow_event(self, job: ShadowJob, event: str) -> None:
        if self.metrics is not None:
            self.metrics.shadow(job.shadow_variant, event)

    def _shadow_scored(self, result: ShadowResult) -> None:
        job = result.job
        if self.metrics is not None:
            self.metrics.shadow_scored(job.shadow_variant, result.overlap, result.correlation)
        if self.impressions is not None:
            self.impressions.record(ShadowScore(job.request_id, job.experiment,
                                                job.served_variant, job.shadow_variant,
                                                result.overlap, result.correlation, time.time()))
        logger.info("shadow scored", extra={"fields": {
            "request_id": job.request_id, "variant": job.served_variant,
            "shadow": job.shadow_variant, "overlap": round(result.overlap, 3),
            "rank_correlation": round(result.correlation, 3)}})

    # ---- experiments ----

    def SetExperiment(self, request, context):
        """Check the experiment (names, shares, targets; each variant's servers serve its
        version), then install and persist it; a refused one leaves the running one as is."""
        edge.annotate(experiment=request.experiment.name[:64],
                      variants=len(request.experiment.variants))

        def check(plan: Plan) -> None:
            self.upstreams.prepare(plan.targets())
            every = [*plan.variants, *([plan.shadow] if plan.shadow else [])]
            for v in every:
                if v.version:
                    self._check_version(v, context)

        plan = self.experiments.set(request.experiment, check)
        return experiment_pb2.ExperimentState(experiment=plan.message, set_at=plan.set_at)

    def GetExperiment(self, request, context):
        plan = self.experiments.plan
        return experiment_pb2.ExperimentState(experiment=plan.message, set_at=plan.set_at)

    def _check_version(self, variant: Variant, context) -> None:
        upstream = self.upstreams.get(variant.retrieval_target, variant.ranking_target)
        timeout = self._timeout(context, self.settings.admin_timeout_s)
        for who, admin in (("retrieval", upstream.retrieval_admin),
                           ("ranking", upstream.ranking_admin)):
            try:
                serving = admin.ListVersions(admin_pb2.ListVersionsRequest(),
                                             timeout=timeout).serving
            except grpc.RpcError as exc:
                raise self._upstream_error(who, exc) from exc
            if serving != variant.version:
                raise VariantVersionMismatch(
                    f"variant {variant.name}: {who} serves version {serving or '(none)'}, not "
                    f"{variant.version}: pin it there first (SHORTLIST_{who.upper()}_VERSION "
                    "or SetVersion)")

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
        if request.follows_request_id:
            self._check_id("follows_request_id", request.follows_request_id)
            edge.annotate(follows=request.follows_request_id[:64])
        response = self._forward(self.upstream.retrieval.RecordInteraction, request, context,
                                 self.settings.write_timeout_s)
        self.recent_writes.remember(request.user_id, response.event_id)
        if self.impressions is not None and not response.duplicate:
            # the outcome side of the experiment report: what followed a served list
            self.impressions.record(Outcome(
                request.user_id, request.item_id, request.event.strip().lower(),
                request.weight or 1.0, time.time(),  # when it followed, not its event time
                request.follows_request_id))
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


def verdict_categories(retrieved: retrieval_pb2.RetrieveResponse, item_id: str) -> list[str]:
    """The categories retrieval gave the item (it describes explained candidates)."""
    return next((list(it.categories) for it in retrieved.items if it.item_id == item_id), [])


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
            item.score_rank = ranked_item.score_rank
        if row is None:
            continue
        for g in range(n_gen):
            g_rank = cols.generator_ranks[row * n_gen + g]
            if g_rank > 0:
                src = item.sources.add(generator=generators[g], rank=g_rank)
                if debug:
                    src.score = cols.generator_scores[row * n_gen + g]
    return response
