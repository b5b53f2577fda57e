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
                            rules=recommend_rules(args))
    out = recommend_json(args.user, resp)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"user {args.user}  segment={out['segment']}  version={resp.version}"
          f"  served by {resp.configuration or '?'}{'  DEGRADED' if resp.degraded else ''}")
    if not resp.items:
        used = _filters_used(args)
        print(f"no recommendations for user {args.user} "
              + (f"(every candidate was filtered out? filters: {used})" if used else
                 "(no candidates left: has the user seen every item, or is the catalog "
                 "empty?)"))
    else:
        # a column only when something fills it: rules acted, ranking explained its order
        ruled = any(i["rules"] for i in out["items"])
        whys = [why(i) for i in out["items"]]
        explained = any(whys)
        print_table([(n + 1, i["item_id"], f"{i['score']:.4f}", i["title"],
                      ",".join(i["sources"]), *(["; ".join(i["rules"])] if ruled else []),
                      *([whys[n]] if explained else []))
                     for n, i in enumerate(out["items"])],
                    ("#", "item", "score", "title", "sources", *(["rules"] if ruled else []),
                     *(["why"] if explained else [])),
                    cap_last=not explained)
        note = order_note(resp)
        if note:
            print(note)
    print("timings (ms): " + "  ".join(f"{k}={v:.2f}" for k, v in out["timings_ms"].items()))
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
                                     client_event_id=args.event_id, event=args.event)
    again = ", already recorded" if resp.duplicate else ""
    kind = f" ({args.event})" if args.event else ""
    return _emit(args, {"user_id": args.user, "item_id": args.item, "event": args.event,
                        "sequence": resp.sequence, "event_id": resp.event_id,
                        "duplicate": resp.duplicate, "history_length": resp.history_length},
                 f"recorded {args.user} -> {args.item}{kind} (event {_position(resp)}{again}, "
                 f"{resp.history_length} items in history)")


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


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive (every call needs a deadline): "
                                         f"{text}")
    return value


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
    rec.add_argument("--after", default="", metavar="EVENT_ID",
                     help="reflect this write (its event id) even on another replica")
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
    for p in (rec, sim, hl, fb, up, se, ve, rb):  # also accept --json/--target after it
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
        p.add_argument("--target", default=argparse.SUPPRESS, help=target_help)
    return parser


COMMANDS = {"recommend": cmd_recommend, "similar": cmd_similar, "health": cmd_health,
            "feedback": cmd_feedback, "upsert-item": cmd_upsert, "search": cmd_search,
            "versions": cmd_versions, "rollback": cmd_rollback}


def _run(args: argparse.Namespace) -> int:
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
