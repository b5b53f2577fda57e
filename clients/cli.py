"""`shortlist`: a command-line client of the gateway, for people debugging the service."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

# gRPC's C core logs a failed TLS handshake to stderr at INFO level, which would add a second
# line to the CLI's one-line errors; set before grpc loads, and an explicit setting still wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc  # noqa: E402

from shortlist.client import (  # noqa: E402
    DEFAULT_TARGET,
    TARGET_ENV,
    TOKEN_ENV,
    Client,
    ClientConfigError,
    ShortlistError,
)
from shortlist.client.channel import channel_credentials  # noqa: E402
from shortlist.v1 import common_pb2, gateway_pb2  # noqa: E402

SEGMENTS = {v.number: v.name.removeprefix("USER_SEGMENT_").lower()
            for v in common_pb2.UserSegment.DESCRIPTOR.values}
# What a shell reports for a process killed by SIGPIPE (128 + 13): `cmd | head` stays quiet.
EXIT_BROKEN_PIPE = 141
# The standard event types (shortlist.common.events.STANDARD, which the CLI may not import:
# clients know only the contract; a test keeps the two equal). The server's model decides.
STANDARD_EVENTS = ("view", "click", "rating", "like", "purchase", "skip", "dislike")
MMR_NOTE = "order: ranker score, then re-ordered by MMR for diversity (scores are the ranker's)"
DEGRADED_NOTE = ("order and scores are retrieval's: ranking was skipped (down, failed or late), "
                 "so this is not the ranked answer")
EPILOG = f"""\
environment:
  {TARGET_ENV}  gateway host:port when --target is not given (default {DEFAULT_TARGET})
  {TOKEN_ENV}   write token when --token is not given

Errors are one line on stderr naming the call, the address tried and what to check; the exit
status is 1 for a failed call, 2 for bad options."""


def recommend_json(user_id: str, resp: gateway_pb2.RecommendResponse) -> dict:
    return {
        "user_id": user_id,
        "items": [{"item_id": i.item_id, "score": round(i.score, 6), "title": i.title,
                   "sources": [s.generator for s in i.sources],
                   "retrieval_rank": i.retrieval_rank, "ranking_rank": i.ranking_rank,
                   "rules": list(i.rules),
                   "contributions": [{"feature": c.feature, "description": c.description,
                                      "contribution": round(c.contribution, 6)}
                                     for c in i.contributions],
                   "because_of_item_id": i.because_of_item_id}
                  for i in resp.items],
        "degraded": resp.degraded,
        "timings_ms": {k: round(v, 3) for k, v in sorted(resp.timings_ms.items())},
        "version": resp.version,
        "configuration": resp.configuration,
        "segment": SEGMENTS.get(resp.segment, "unspecified"),
        "request_id": resp.request_id,
        "variant": resp.variant,
        "teams": [i.team for i in resp.items] if any(i.team for i in resp.items) else [],
    }


def print_table(rows: list[tuple], headers: tuple[str, ...], cap_last: bool = True) -> None:
    """Columns of at most 60 characters, so a long title cannot push the rest off screen;
    without ``cap_last`` the last column is shown whole (nothing follows it to push)."""
    cells = [headers, *[tuple(str(c) for c in r) for r in rows]]
    widths = [min(60, max(len(r[i]) for r in cells)) for i in range(len(headers))]
    if not cap_last:
        widths[-1] = max(len(r[-1]) for r in cells)
    for n, r in enumerate(cells):
        print("  ".join(c[:w].ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def order_note(resp: gateway_pb2.RecommendResponse) -> str:
    """Why the order is what it is, when the score column alone would mislead; else "".

    MMR trades a little relevance for diversity, so a lower-scored item can come first while
    the scores shown stay the ranker's, which looks like a bug unless it is said. A degraded
    answer is retrieval's order, which a reader should not mistake for the ranked one.
    """
    if resp.degraded:
        return DEGRADED_NOTE
    scores = [i.score for i in resp.items]
    return "" if all(a >= b for a, b in zip(scores, scores[1:], strict=False)) else MMR_NOTE


def why(item: dict) -> str:
    """An item's explanation in one cell: ``because i12; als_score +0.41, popularity -0.12``.

    Feature names rather than their descriptions, which run to fifty characters each: three
    of those would make the table unreadable (``--json`` carries the descriptions).
    """
    parts = [f"because {item['because_of_item_id']}"] if item["because_of_item_id"] else []
    if item["contributions"]:
        parts.append(", ".join(f"{c['feature']} {c['contribution']:+.2f}"
                               for c in item["contributions"]))
    return "; ".join(parts)


def _filters_used(args: argparse.Namespace) -> str:
    used = [(flag, values) for flag, values in (
        ("--exclude", args.exclude), ("--include-category", args.include_category),
        ("--exclude-category", args.exclude_category), ("--recent", args.recent)) if values]
    return " ".join(f"{flag} {' '.join(values)}" for flag, values in used)


def attribute(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` from the command line (argparse reports a bad one in one line)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


# A rule's target on the command line, and the Rule field it sets.
TARGET_FIELDS = {"item:": "item_id", "category:": "category"}
TARGETS = tuple(TARGET_FIELDS)
Rule = common_pb2.Rule


def _target(text: str) -> dict[str, str]:
    """``item:ID`` or ``category:NAME`` as Rule fields (argparse names the flag in front)."""
    for prefix, field in TARGET_FIELDS.items():
        if text.startswith(prefix):
            value = text.removeprefix(prefix)
            if not value:
                raise argparse.ArgumentTypeError(f"nothing after {prefix!r} in {text!r}")
            return {field: value}
    raise argparse.ArgumentTypeError(f"the target must be item:ID or category:NAME, got "
                                     f"{text!r}")


def _weighted(action: int) -> Callable[[str], common_pb2.Rule]:
    """A parser of ``TARGET=FACTOR`` (the factor's range is the server's to check)."""
    def parse(text: str) -> common_pb2.Rule:
        target, sep, factor = text.rpartition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected TARGET=FACTOR, got {text!r}")
        try:
            value = float(factor)
        except ValueError:
            raise argparse.ArgumentTypeError(f"the factor must be a number, got {factor!r} "
                                             f"in {text!r}") from None
        return Rule(action=action, factor=value, **_target(target))
    return parse


def pin_rule(text: str) -> common_pb2.Rule:
    """``ITEM@POSITION`` (``item:ID@POSITION`` too): a pin names one item, never a category."""
    item, sep, position = text.rpartition("@")
    item = item.removeprefix("item:")
    if not sep or not item:
        raise argparse.ArgumentTypeError(f"expected ITEM@POSITION, got {text!r}")
    if item.startswith("category:"):
        raise argparse.ArgumentTypeError(f"a pin names one item, not a category: {text!r}")
    try:
        return Rule(action=Rule.PIN, item_id=item, position=int(position))
    except ValueError:
        raise argparse.ArgumentTypeError(f"the position must be a whole number, got "
                                         f"{position!r} in {text!r}") from None


def exclusion(text: str) -> str:
    """An ``--exclude`` value: a bare item id (a filter, as before rules existed) or an
    ``item:ID`` / ``category:NAME`` target (an EXCLUDE rule), checked here."""
    if text.startswith(TARGETS):
        _target(text)
    return text


def recommend_rules(args: argparse.Namespace) -> list[common_pb2.Rule]:
    """The business rules of the recommend flags: --boost, --bury, --pin in command-line
    order, then the --exclude values written as targets."""
    return [*args.rules, *(Rule(action=Rule.EXCLUDE, **_target(text))
                           for text in args.exclude or [] if text.startswith(TARGETS))]


def cmd_recommend(client: Client, args: argparse.Namespace) -> int:
    resp = client.recommend(args.user, args.k, recent_item_ids=args.recent or [],
                            exclude_item_ids=[e for e in args.exclude or []
                                              if not e.startswith(TARGETS)],
                            include_categories=args.include_category or [],
                            exclude_categories=args.exclude_category or [], debug=True,
                            explain=True,
                            after_event_id=args.after, user_attributes=dict(args.attr),
                            rules=recommend_rules(args), variant=args.variant)
    out = recommend_json(args.user, resp)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"user {args.user}  segment={out['segment']}  version={resp.version}"
          f"  served by {resp.configuration or '?'}{'  DEGRADED' if resp.degraded else ''}"
          f"  variant={resp.variant or '?'}  request={resp.request_id}")
    if not resp.items:
        used = _filters_used(args)
        print(f"no recommendations for user {args.user} "
              + (f"(every candidate was filtered out? filters: {used})" if used else
                 "(no candidates left: has the user seen every item, or is the catalog "
                 "empty?)"))
    else:
        # a column only when something fills it: rules acted, ranking explained its order
        ruled = any(i["rules"] for i in out["items"])
        teams = out["teams"]
        whys = [why(i) for i in out["items"]]
        explained = any(whys)
        print_table([(n + 1, i["item_id"], f"{i['score']:.4f}", i["title"],
                      ",".join(i["sources"]), *([teams[n]] if teams else []),
                      *(["; ".join(i["rules"])] if ruled else []),
                      *([whys[n]] if explained else []))
                     for n, i in enumerate(out["items"])],
                    ("#", "item", "score", "title", "sources", *(["arm"] if teams else []),
                     *(["rules"] if ruled else []), *(["why"] if explained else [])),
                    cap_last=not explained)
        note = order_note(resp)
        if note:
            print(note)
    print("timings (ms): " + "  ".join(f"{k}={v:.2f}" for k, v in out["timings_ms"].items()))
    return 0


VERDICTS = {"RECOMMENDED": "recommended", "RANKED_BELOW_K": "ranked below k",
            "NOT_RETRIEVED": "not retrieved", "SEEN": "already seen", "FILTERED": "filtered",
            "UNKNOWN_ITEM": "unknown item"}


def cmd_explain(client: Client, args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    resp = client.explain(args.user, args.item, args.k, recent_item_ids=args.recent or [],
                          exclude_item_ids=[e for e in args.exclude or []
                                            if not e.startswith(TARGETS)],
                          include_categories=args.include_category or [],
                          exclude_categories=args.exclude_category or [],
                          rules=recommend_rules(args), variant=args.variant,
                          user_attributes=dict(args.attr))
    if args.json:
        return _emit(args, json_format.MessageToDict(resp), "")
    print(f"user {args.user}  segment={SEGMENTS.get(resp.segment, 'unspecified')}  "
          f"version={resp.version}  served by {resp.configuration or '?'}  "
          f"variant={resp.variant}  top {resp.k}")
    if not resp.items:
        print(f"nothing recommended to {args.user}: no candidates are left")
    for n, e in enumerate(resp.items):
        verdict = VERDICTS.get(type(e).Verdict.Name(e.verdict), "?")
        position = f"#{e.item.ranking_rank}" if e.item.ranking_rank else "-"
        title = f"  {e.item.title}" if e.item.title else ""
        print(f"{position:>4}  {e.item_id}{title}  [{verdict}]" if args.item else
              f"{n + 1:>4}  {e.item_id}{title}")
        print(f"      {e.reason}")
    return 0


def cmd_similar(client: Client, args: argparse.Namespace) -> int:
    resp = client.similar_items(args.item, args.k)
    items = [{"item_id": s.item.item_id, "score": round(s.score, 6), "title": s.item.title}
             for s in resp.items]
    if args.json:
        print(json.dumps({"item_id": args.item, "items": items, "version": resp.version},
                         indent=2))
        return 0
    if not items:
        print(f"no items similar to {args.item} in version {resp.version or '(unknown)'} "
              "(the item has no neighbours yet?)")
        return 0
    print_table([(n + 1, i["item_id"], f"{i['score']:.4f}", i["title"])
                 for n, i in enumerate(items)], ("#", "item", "similarity", "title"))
    return 0


def _emit(args: argparse.Namespace, obj: dict, text: str) -> int:
    print(json.dumps(obj, indent=2) if args.json else text)
    return 0


def cmd_feedback(client: Client, args: argparse.Namespace) -> int:
    resp = client.record_interaction(args.user, args.item, args.weight, args.timestamp,
                                     client_event_id=args.event_id, event=args.event,
                                     follows_request_id=args.follows)
    again = ", already recorded" if resp.duplicate else ""
    kind = f" ({args.event})" if args.event else ""
    return _emit(args, {"user_id": args.user, "item_id": args.item, "event": args.event,
                        "sequence": resp.sequence, "event_id": resp.event_id,
                        "duplicate": resp.duplicate, "history_length": resp.history_length},
                 f"recorded {args.user} -> {args.item}{kind} (event {_position(resp)}{again}, "
                 f"{resp.history_length} items in history)")


def experiment_json(state) -> dict:
    from google.protobuf import json_format

    return {"experiment": json_format.MessageToDict(state.experiment), "set_at": state.set_at}


def cmd_experiment(client: Client, args: argparse.Namespace) -> int:
    """show | set FILE | end: the running traffic split. FILE is the Experiment message in
    protobuf's JSON mapping, e.g. {"name": "mmr", "variants": [{"name": "control",
    "share": 1}, {"name": "less-mmr", "share": 1, "mmrLambda": 1.0}]}."""
    from google.protobuf import json_format

    from shortlist.v1 import experiment_pb2

    if args.action == "set":
        if not args.file:
            print("error: experiment set needs FILE (a JSON Experiment)", file=sys.stderr)
            return 2
        try:
            with open(args.file) as fh:
                msg = json_format.Parse(fh.read(), experiment_pb2.Experiment())
        except OSError as exc:
            print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        except json_format.ParseError as exc:
            print(f"error: {args.file} is not an Experiment in protobuf JSON: {exc}",
                  file=sys.stderr)
            return 2
        state = client.set_experiment(msg)
    elif args.action == "end":
        state = client.set_experiment(experiment_pb2.Experiment())
    else:
        state = client.get_experiment()
    exp = state.experiment
    if args.json:
        return _emit(args, experiment_json(state), "")
    if not exp.variants:
        print("no experiment running: every user is served variant 'default'")
        return 0
    total = sum(v.share for v in exp.variants)
    print(f"experiment {exp.name} (salt {exp.salt or exp.name}), set {state.set_at}")
    print_table([(v.name, f"{v.share / total:.1%}" if total else "0",
                  "interleave " + " vs ".join(v.arms) if v.arms else
                  ", ".join(part for part in (
                      f"servers {v.retrieval_target} / {v.ranking_target}"
                      if v.retrieval_target else "", f"version {v.version}" if v.version else "",
                      f"order {v.order}" if v.order else "",
                      f"mmr {v.mmr_lambda:g}" if v.HasField("mmr_lambda") else "",
                      f"{v.candidates} candidates" if v.candidates else "",
                      f"{len(v.rules)} rules" if v.rules else "")
                           if part) or "the gateway's settings")
                 for v in exp.variants], ("variant", "users", "changes"), cap_last=False)
    if exp.HasField("shadow"):
        print(f"shadow: {exp.shadow.name} on {exp.shadow_fraction or 1.0:.0%} of requests")
    return 0


def _position(resp) -> str:
    """The write's place: the shared stream's id, or the embedded log's sequence number."""
    return resp.event_id or f"#{resp.sequence}"


def cmd_upsert(client: Client, args: argparse.Namespace) -> int:
    resp = client.upsert_item(args.item, args.title, args.category or [], args.text or "")
    verb = "created" if resp.created else "updated"
    return _emit(args, {"item_id": args.item, "created": resp.created,
                        "sequence": resp.sequence, "event_id": resp.event_id},
                 f"{verb} {args.item} (event {_position(resp)})")


def cmd_search(client: Client, args: argparse.Namespace) -> int:
    resp = client.search_items(args.query, args.k)
    items = [{"item_id": s.item.item_id, "score": round(s.score, 6), "title": s.item.title}
             for s in resp.items]
    if args.json:
        return _emit(args, {"query": args.query, "items": items, "fuzzy": resp.fuzzy,
                            "version": resp.version}, "")
    if not items:
        print(f"no items match {args.query!r}, not even by close spelling")
        return 0
    if resp.fuzzy:
        print(f"(no exact match for {args.query!r}; showing close spellings)")
    print_table([(n + 1, i["item_id"], f"{i['score']:.4f}", i["title"])
                 for n, i in enumerate(items)], ("#", "item", "score", "title"))
    return 0


def cmd_versions(client: Client, args: argparse.Namespace) -> int:
    resp = client.list_versions()
    rows = [{"version": v.version, "created_at": v.created_at, "serving": v.serving,
             "pinned": v.pinned} for v in resp.versions]
    if args.json:
        return _emit(args, {"serving": resp.serving, "pinned": resp.pinned or None,
                            "versions": rows}, "")
    print_table([(v["version"], v["created_at"],
                  ", ".join(s for s in ("serving", "pinned") if v[s]) or "-") for v in rows],
                ("version", "created", "state"))
    print(f"following: {'pinned ' + resp.pinned if resp.pinned else 'the newest version'}")
    return 0


def cmd_rollback(client: Client, args: argparse.Namespace) -> int:
    target = args.to
    if not target and not args.latest:
        listing = client.list_versions()
        names = [v.version for v in listing.versions]
        if listing.serving not in names or names.index(listing.serving) == 0:
            print(f"error: rollback at {client.target}: no version older than the serving one "
                  f"({listing.serving or 'none'}) to roll back to; pin one with --to VERSION "
                  "(`shortlist versions` lists them)", file=sys.stderr)
            return 1
        target = names[names.index(listing.serving) - 1]
    resp = client.set_version(target or "", timeout=max(args.timeout, 60.0))
    return _emit(args, {"serving": resp.serving, "pinned": resp.pinned or None},
                 f"serving {resp.serving}" + (" (pinned)" if resp.pinned else
                                              " (following the newest version)"))


def _served_services(channel: grpc.Channel, timeout: float) -> list[str] | None:
    """The application services a server offers, from server reflection; None if it fails.

    Only asked after a health check said NOT_FOUND, so a healthy check costs nothing extra.
    """
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    try:
        reply = next(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([request]), timeout=timeout))
    except (grpc.RpcError, StopIteration):
        return None
    return sorted(s.name for s in reply.list_services_response.service
                  if not s.name.startswith("grpc."))


def health_error(channel: grpc.Channel, args: argparse.Namespace, exc: grpc.RpcError) -> str:
    """One line for a failed health check: what was asked of whom, the status and a hint."""
    code = exc.code() or grpc.StatusCode.UNKNOWN
    details = " ".join((exc.details() or "").split())
    what = f"service {args.service!r}" if args.service else "the server"
    text = f"health of {what} at {args.target}: {code.name}: "
    if code == grpc.StatusCode.NOT_FOUND:
        services = _served_services(channel, min(args.timeout, 2.0))
        served = (f"it serves: {', '.join(services)}; " if services else "")
        return text + (f"the server has no such service ({served}without --service the whole "
                       "server is checked)")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return text + "the server there does not offer grpc.health.v1 (not a Shortlist server?)"
    hint = ShortlistError("Check", args.target, code, details, args.timeout).hint
    if code == grpc.StatusCode.UNAVAILABLE and "gateway" in hint:  # any server answers health
        hint = ("is a Shortlist server (gateway, retrieval or ranking) running there? (choose "
                f"another with --target or ${TARGET_ENV})")
    return text + "; ".join(part for part in (details, hint) if part)


def cmd_health(client: Client, args: argparse.Namespace) -> int:
    try:
        resp = health_pb2_grpc.HealthStub(client.channel).Check(
            health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
    except grpc.RpcError as exc:
        print(f"error: {health_error(client.channel, args, exc)}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    if args.json:
        print(json.dumps({"target": args.target, "service": args.service, "status": status}))
    else:
        print(f"{args.target} {args.service or '(server)'}: {status}")
    return 0 if resp.status == health_pb2.HealthCheckResponse.SERVING else 1


# `shortlist drift` reads the servers' /metrics where `make serve --metrics` and the compose
# stack publish them (shortlist.common.stack.DEFAULT_METRICS_PORTS, which clients may not
# import); the PSI readings and thresholds are shortlist.common.drift's (a test keeps them
# equal), docs/operations.md says what each calls for.
DRIFT_METRICS = {"retrieval": "127.0.0.1:9102", "ranking": "127.0.0.1:9103"}
DRIFT_WATCH, DRIFT_RETRAIN = 0.1, 0.25
# Exit status when a signal is past the retrain threshold: a cron job can gate on it.
EXIT_RETRAIN = 3


def drift_verdict(psi: float | None, observations: int, min_observations: int) -> str:
    if psi is None or observations < min_observations:
        return "too few"
    if psi > DRIFT_RETRAIN:
        return "retrain"
    return "watch" if psi >= DRIFT_WATCH else "stable"


def drift_readings(server: str, text: str) -> list[dict]:
    """The drift gauges of one /metrics exposition: each signal's PSI and observations."""
    from shortlist.clients.bench import samples

    found: dict[str, dict] = {}
    for name, labels, value in samples(text):
        if name in ("shortlist_drift_psi", "shortlist_drift_window_observations"):
            row = found.setdefault(labels.get("signal", "?"), {
                "server": labels.get("server", server), "signal": labels.get("signal", "?"),
                "psi": None, "observations": 0})
            if name == "shortlist_drift_psi":
                row["psi"] = value
            else:
                row["observations"] = int(value)
    return list(found.values())


def plot_drift(rows: list[dict], path: str) -> bool:
    """PSI per signal as bars with the two threshold lines; False when matplotlib (the
    optional ``report`` extra) is missing, which is said on stderr."""
    try:
        import matplotlib
    except ImportError:
        print(f"warning: --plot {path}: matplotlib is not installed (pip install "
              "'.[report]'); no plot", file=sys.stderr)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"stable": "tab:green", "watch": "tab:orange", "retrain": "tab:red",
               "too few": "tab:gray"}
    values = [r["psi"] or 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(rows) + 2), 3.5))
    bars = ax.bar([f"{r['server']}\n{r['signal']}" for r in rows], values,
                  color=[colours[r["verdict"]] for r in rows])
    ax.bar_label(bars, [f"{v:.3g}" if r["psi"] is not None else r["verdict"]
                        for v, r in zip(values, rows, strict=True)], fontsize=8)
    for value, label, x in ((DRIFT_WATCH, "watch", 0.0), (DRIFT_RETRAIN, "retrain", 1.0)):
        ax.axhline(value, color="black", linestyle="--", linewidth=0.8)
        ax.annotate(f"{label} {value:g}", (x, value), xycoords=("axes fraction", "data"),
                    ha="left" if x == 0.0 else "right", va="bottom", fontsize=8)
    top = max(values + [DRIFT_RETRAIN])
    if top > 1.0:  # one large reading must not flatten the thresholds: log above 0.5
        ax.set_yscale("symlog", linthresh=0.5)
    ax.set_ylim(0, top * 1.5)
    ax.set_ylabel("PSI against the version's reference")
    ax.set_title("shortlist drift")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def cmd_drift(args: argparse.Namespace) -> int:
    """PSI of each drift signal from the servers' /metrics: 0 when none calls for a retrain,
    EXIT_RETRAIN when one does, 1 when an endpoint could not be read (and none does)."""
    import http.client
    import urllib.request

    rows: list[dict] = []
    errors: list[str] = []
    silent: list[str] = []
    for server, address in (("retrieval", args.retrieval_metrics),
                            ("ranking", args.ranking_metrics)):
        url = address if "://" in address else f"http://{address}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=args.timeout) as resp:  # noqa: S310
                text = resp.read().decode()
        except (OSError, ValueError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            errors.append(f"drift: {server} /metrics at {url}: {reason} (is {server} serving "
                          "/metrics there? `make serve SERVE_ARGS=--metrics` does; else "
                          f"--{server}-metrics HOST:PORT)")
            continue
        found = drift_readings(server, text)
        if not found:
            silent.append(server)
        rows += found
    for row in rows:
        row["verdict"] = drift_verdict(row["psi"], row["observations"], args.min_observations)
    retrain = any(r["verdict"] == "retrain" for r in rows)
    if args.json:
        print(json.dumps({"signals": rows, "errors": errors, "no_reference": silent,
                          "thresholds": {"watch": DRIFT_WATCH, "retrain": DRIFT_RETRAIN,
                                         "min_observations": args.min_observations}},
                         indent=2))
    else:
        if rows:
            print_table([(r["server"], r["signal"],
                          "-" if r["psi"] is None else f"{r['psi']:.4f}", r["observations"],
                          r["verdict"]) for r in rows],
                        ("server", "signal", "psi", "observations", "verdict"))
            print(f"thresholds: psi < {DRIFT_WATCH:g} stable, {DRIFT_WATCH:g}-{DRIFT_RETRAIN:g}"
                  f" watch, > {DRIFT_RETRAIN:g} retrain; fewer than {args.min_observations} "
                  "observations: too few to judge")
        for server in silent:
            print(f"{server}: no drift gauges (its version has no drift reference: fitted "
                  "before references existed; fit again)")
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if args.plot and rows:
        plot_drift(rows, args.plot)
    if retrain:
        return EXIT_RETRAIN
    return 1 if errors else 0


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive (every call needs a deadline): "
                                         f"{text}")
    return value


def _request_arguments(rec: argparse.ArgumentParser) -> None:
    """What recommend and explain share: the same request, served or explained."""
    rec.add_argument("--user", required=True)
    rec.add_argument("-k", type=int, default=10)
    rec.add_argument("--recent", nargs="*",
                     help="items the user just engaged with, oldest first (a session)")
    rec.add_argument("--attr", action="append", type=attribute, default=[],
                     metavar="NAME=VALUE",
                     help="what is known of the user (repeatable: --attr age=25 --attr "
                          "occupation=student); a new user gets what is popular among users "
                          "like them")
    rec.add_argument("--exclude", nargs="*", action="extend", type=exclusion,
                     metavar="ID|TARGET",
                     help="item ids to exclude (a filter); a TARGET (item:ID, "
                          "category:NAME) is an exclusion rule instead (repeatable)")
    rules = rec.add_argument_group(
        "business rules", "repeatable, applied in order, with --exclude TARGET; TARGET is "
        "item:ID or category:NAME; the server checks them (a FACTOR above 1, a POSITION from "
        "1 to 1000). A pin wins over a category exclusion; the item's rules column says what "
        "touched it")
    rules.add_argument("--boost", dest="rules", action="append", default=[],
                       type=_weighted(Rule.BOOST), metavar="TARGET=FACTOR",
                       help="multiply the target's odds of being chosen by FACTOR")
    rules.add_argument("--bury", dest="rules", action="append",
                       type=_weighted(Rule.BURY), metavar="TARGET=FACTOR",
                       help="divide them by FACTOR")
    rules.add_argument("--pin", dest="rules", action="append", type=pin_rule,
                       metavar="ITEM@POSITION",
                       help="put the item at the 1-based position, even if it was no "
                            "candidate")
    rec.add_argument("--include-category", nargs="*", help="only these categories")
    rec.add_argument("--exclude-category", nargs="*", help="never these categories")
    rec.add_argument("--variant", default="", metavar="NAME",
                     help="serve this experiment variant instead of the user's own")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shortlist", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    target_help = (f"gateway host:port (default: ${TARGET_ENV}, else {DEFAULT_TARGET}); "
                   "for health, any of the three servers")
    default_target = os.environ.get(TARGET_ENV) or DEFAULT_TARGET
    parser.add_argument("--target", default=default_target, help=target_help)
    parser.add_argument("--timeout", type=_positive, default=5.0, help="deadline in seconds")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    tls = parser.add_argument_group("security", "TLS to the target (any --tls-* option turns "
                                    "it on) and the write token")
    tls.add_argument("--tls-ca", default="",
                     help="PEM CA to verify the server (default with TLS: system roots)")
    tls.add_argument("--tls-cert", default="",
                     help="PEM client certificate, for servers that require mTLS")
    tls.add_argument("--tls-key", default="", help="PEM private key of --tls-cert")
    tls.add_argument("--tls-server-name", default="",
                     help="name to check the server certificate against (default: the "
                          "target's host)")
    tls.add_argument("--token", default=None,
                     help=f"bearer token sent on every call (default: ${TOKEN_ENV}); needed "
                          "by feedback, upsert-item and rollback when the gateway has a "
                          "write token")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("recommend", help="recommendations for a user")
    _request_arguments(rec)
    rec.add_argument("--after", default="", metavar="EVENT_ID",
                     help="reflect this write (its event id) even on another replica")
    exp = sub.add_parser("explain", help="why a user gets their top k, or why not an item "
                                         "(recommended, ranked below k, not retrieved, seen, "
                                         "filtered, unknown)")
    exp.add_argument("--item", default="", help="the item to account for; default: each item "
                                                "of the top k")
    _request_arguments(exp)
    sim = sub.add_parser("similar", help="items similar to an item")
    sim.add_argument("--item", required=True)
    sim.add_argument("-k", type=int, default=10)
    hl = sub.add_parser("health", help="grpc.health.v1 status of a server")
    hl.add_argument("--service", default="", help="service name; empty: the whole server")
    fb = sub.add_parser("feedback", help="record an interaction (durable before it returns)")
    fb.add_argument("--user", required=True)
    fb.add_argument("--item", required=True)
    fb.add_argument("--weight", type=float, default=1.0)
    fb.add_argument("--timestamp", type=int, default=0, help="unix seconds; 0: now")
    fb.add_argument("--event-id", default="", metavar="ID",
                    help="your unique id for this event: running the command again with it "
                         "records nothing twice")
    fb.add_argument("--event", default="", metavar="TYPE",
                    help="what kind of interaction: " + ", ".join(STANDARD_EVENTS)
                         + ", or a type the model was trained with (case-insensitive; "
                           "dislike and skip push recommendations away from the item); "
                           "default: untyped")
    fb.add_argument("--follows", default="", metavar="REQUEST_ID",
                    help="the recommend request id (its response's request) this interaction "
                         "followed: the experiment report credits it to that list")
    ex = sub.add_parser("experiment", help="show, set or end the traffic split between "
                                           "variants (set and end need the write token)")
    ex.add_argument("action", choices=("show", "set", "end"))
    ex.add_argument("file", nargs="?", default="",
                    help="set: a JSON Experiment (protobuf JSON mapping), see docs/operations.md")
    up = sub.add_parser("upsert-item", help="add or update an item; searchable at once")
    up.add_argument("--item", required=True)
    up.add_argument("--title", required=True)
    up.add_argument("--category", action="append", help="repeat for several")
    up.add_argument("--text", default="", help="description or tags for the content model")
    se = sub.add_parser("search", help="search items by text (typo tolerant)")
    se.add_argument("query")
    se.add_argument("-k", type=int, default=10)
    ve = sub.add_parser("versions", help="artifact versions and which one is served")
    rb = sub.add_parser("rollback", help="serve an earlier version (default: the previous one)")
    rb.add_argument("--to", default="", help="version to pin")
    rb.add_argument("--latest", action="store_true", help="unpin: follow the newest again")
    dr = sub.add_parser("drift", help="drift of the served traffic from the version's "
                                      "reference (PSI per signal, from the servers' /metrics); "
                                      f"exit {EXIT_RETRAIN} if a signal calls for a retrain")
    for server, address in DRIFT_METRICS.items():
        dr.add_argument(f"--{server}-metrics", default=address, metavar="HOST:PORT|URL",
                        help=f"{server}'s /metrics endpoint (default {address})")
    dr.add_argument("--min-observations", type=int, default=100, metavar="N",
                    help="a signal with fewer observations in its window is not judged "
                         "(default 100)")
    dr.add_argument("--plot", default="", metavar="FILE.png",
                    help="also draw the PSIs and thresholds (needs matplotlib: the report "
                         "extra)")
    dr.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    for p in (rec, exp, sim, hl, fb, up, se, ve, rb, ex):  # also accept --json/--target after it
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
        p.add_argument("--target", default=argparse.SUPPRESS, help=target_help)
    return parser


COMMANDS = {"recommend": cmd_recommend, "similar": cmd_similar, "health": cmd_health,
            "feedback": cmd_feedback, "upsert-item": cmd_upsert, "search": cmd_search,
            "versions": cmd_versions, "rollback": cmd_rollback, "experiment": cmd_experiment,
            "explain": cmd_explain}


def _run(args: argparse.Namespace) -> int:
    if args.command == "drift":  # reads /metrics over HTTP: no gateway, no gRPC client
        return cmd_drift(args)
    try:
        # Checked here with the CLI's option names, so a mistake names --tls-key, not tls_key.
        channel_credentials(args.tls_ca, args.tls_cert, args.tls_key, prefix="--tls-")
        client = Client(args.target, timeout=args.timeout, token=args.token,
                        tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
                        tls_server_name=args.tls_server_name)
    except ClientConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with client:
        try:
            return COMMANDS[args.command](client, args)
        except ShortlistError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = _run(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit where it cannot be caught
    except BrokenPipeError:
        # The reader (`| head`) has what it wanted; exit as quietly as a SIGPIPE'd tool would.
        # Point stdout at devnull so the interpreter's own final flush does not fail too.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass  # stdout is not a real file (a test's capture): nothing will flush to it
        return EXIT_BROKEN_PIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
