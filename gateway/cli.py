"""`shortlist`: a command-line client of the gateway, for people debugging the service."""

from __future__ import annotations

import argparse
import json
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shortlist.common import security
from shortlist.v1 import admin_pb2, common_pb2, gateway_pb2, gateway_pb2_grpc, retrieval_pb2

DEFAULT_TARGET = "127.0.0.1:50051"
TOKEN_ENV = "SHORTLIST_TOKEN"
SEGMENTS = {v.number: v.name.removeprefix("USER_SEGMENT_").lower()
            for v in common_pb2.UserSegment.DESCRIPTOR.values}


def recommend_json(user_id: str, resp: gateway_pb2.RecommendResponse) -> dict:
    return {
        "user_id": user_id,
        "items": [{"item_id": i.item_id, "score": round(i.score, 6), "title": i.title,
                   "sources": [s.generator for s in i.sources],
                   "retrieval_rank": i.retrieval_rank, "ranking_rank": i.ranking_rank}
                  for i in resp.items],
        "degraded": resp.degraded,
        "timings_ms": {k: round(v, 3) for k, v in sorted(resp.timings_ms.items())},
        "version": resp.version,
        "segment": SEGMENTS.get(resp.segment, "unspecified"),
        "request_id": resp.request_id,
    }


def print_table(rows: list[tuple], headers: tuple[str, ...]) -> None:
    cells = [headers, *[tuple(str(c) for c in r) for r in rows]]
    widths = [min(60, max(len(r[i]) for r in cells)) for i in range(len(headers))]
    for n, r in enumerate(cells):
        print("  ".join(c[:w].ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def cmd_recommend(client, args) -> int:
    req = gateway_pb2.RecommendRequest(
        user_id=args.user, k=args.k, recent_item_ids=args.recent or [], debug=True,
        filters=common_pb2.Filters(exclude_item_ids=args.exclude or [],
                                   include_categories=args.include_category or [],
                                   exclude_categories=args.exclude_category or []))
    resp = client.Recommend(req, timeout=args.timeout)
    out = recommend_json(args.user, resp)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"user {args.user}  segment={out['segment']}  version={resp.version}"
          f"{'  DEGRADED' if resp.degraded else ''}")
    print_table([(n + 1, i["item_id"], f"{i['score']:.4f}", i["title"], ",".join(i["sources"]))
                 for n, i in enumerate(out["items"])],
                ("#", "item", "score", "title", "sources"))
    print("timings (ms): " + "  ".join(f"{k}={v:.2f}" for k, v in out["timings_ms"].items()))
    return 0


def cmd_similar(client, args) -> int:
    resp = client.SimilarItems(retrieval_pb2.SimilarItemsRequest(item_id=args.item, k=args.k),
                             timeout=args.timeout)
    items = [{"item_id": s.item.item_id, "score": round(s.score, 6), "title": s.item.title}
             for s in resp.items]
    if args.json:
        print(json.dumps({"item_id": args.item, "items": items, "version": resp.version},
                         indent=2))
        return 0
    print_table([(n + 1, i["item_id"], f"{i['score']:.4f}", i["title"])
                 for n, i in enumerate(items)], ("#", "item", "similarity", "title"))
    return 0


def _emit(args, obj: dict, text: str) -> int:
    print(json.dumps(obj, indent=2) if args.json else text)
    return 0


def cmd_feedback(client, args) -> int:
    resp = client.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
        user_id=args.user, item_id=args.item, weight=args.weight, timestamp=args.timestamp),
        timeout=args.timeout)
    return _emit(args, {"user_id": args.user, "item_id": args.item, "sequence": resp.sequence,
                        "history_length": resp.history_length},
                 f"recorded {args.user} -> {args.item} (event #{resp.sequence}, "
                 f"{resp.history_length} items in history)")


def cmd_upsert(client, args) -> int:
    resp = client.UpsertItem(retrieval_pb2.UpsertItemRequest(
        item_id=args.item, title=args.title, categories=args.category or [],
        text=args.text or ""), timeout=args.timeout)
    verb = "created" if resp.created else "updated"
    return _emit(args, {"item_id": args.item, "created": resp.created,
                        "sequence": resp.sequence}, f"{verb} {args.item} (event #{resp.sequence})")


def cmd_search(client, args) -> int:
    resp = client.SearchItems(retrieval_pb2.SearchItemsRequest(query=args.query, k=args.k),
                            timeout=args.timeout)
    items = [{"item_id": s.item.item_id, "score": round(s.score, 6), "title": s.item.title}
             for s in resp.items]
    if args.json:
        return _emit(args, {"query": args.query, "items": items, "fuzzy": resp.fuzzy,
                            "version": resp.version}, "")
    if resp.fuzzy:
        print(f"(no exact match for {args.query!r}; showing close spellings)")
    print_table([(n + 1, i["item_id"], f"{i['score']:.4f}", i["title"])
                 for n, i in enumerate(items)], ("#", "item", "score", "title"))
    return 0


def cmd_versions(client, args) -> int:
    resp = client.ListVersions(admin_pb2.ListVersionsRequest(), timeout=args.timeout)
    rows = [{"version": v.version, "created_at": v.created_at, "serving": v.serving,
             "pinned": v.pinned} for v in resp.versions]
    if args.json:
        return _emit(args, {"serving": resp.serving, "pinned": resp.pinned or None,
                            "versions": rows}, "")
    print_table([(v["version"], v["created_at"], "serving" if v["serving"] else "",
                  "pinned" if v["pinned"] else "") for v in rows],
                ("version", "created", "", ""))
    print(f"following: {'pinned ' + resp.pinned if resp.pinned else 'the newest version'}")
    return 0


def cmd_rollback(client, args) -> int:
    target = args.to
    if not target and not args.latest:
        listing = client.ListVersions(admin_pb2.ListVersionsRequest(), timeout=args.timeout)
        names = [v.version for v in listing.versions]
        if listing.serving not in names or names.index(listing.serving) == 0:
            print("error: no earlier version to roll back to", file=sys.stderr)
            return 1
        target = names[names.index(listing.serving) - 1]
    resp = client.SetVersion(admin_pb2.SetVersionRequest(version=target or ""),
                           timeout=max(args.timeout, 60.0))
    return _emit(args, {"serving": resp.serving, "pinned": resp.pinned or None},
                 f"serving {resp.serving}" + (" (pinned)" if resp.pinned else
                                              " (following the newest version)"))


def cmd_health(channel, args) -> int:
    client = health_pb2_grpc.HealthStub(channel)
    resp = client.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    if args.json:
        print(json.dumps({"target": args.target, "service": args.service, "status": status}))
    else:
        print(f"{args.target} {args.service or '(server)'}: {status}")
    return 0 if resp.status == health_pb2.HealthCheckResponse.SERVING else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shortlist", description=__doc__)
    parser.add_argument("--target", default=DEFAULT_TARGET, help="gateway host:port")
    parser.add_argument("--timeout", type=float, default=5.0, help="deadline in seconds")
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
    rec.add_argument("--recent", nargs="*", help="items the user just engaged with")
    rec.add_argument("--exclude", nargs="*", help="item ids to exclude")
    rec.add_argument("--include-category", nargs="*", help="only these categories")
    rec.add_argument("--exclude-category", nargs="*", help="never these categories")
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
        p.add_argument("--target", default=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV, "")
    try:
        credentials = security.channel_credentials(args.tls_ca, args.tls_cert, args.tls_key,
                                                   prefix="--tls-")
    except security.SecurityConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.tls_server_name and credentials is None:
        credentials = grpc.ssl_channel_credentials()  # TLS with the system's roots
    with security.open_channel(args.target, credentials, server_name=args.tls_server_name,
                               token=token) as channel:
        try:
            if args.command == "health":
                return cmd_health(channel, args)
            client = gateway_pb2_grpc.GatewayStub(channel)
            commands = {"recommend": cmd_recommend, "similar": cmd_similar,
                        "feedback": cmd_feedback, "upsert-item": cmd_upsert,
                        "search": cmd_search, "versions": cmd_versions,
                        "rollback": cmd_rollback}
            return commands[args.command](client, args)
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
