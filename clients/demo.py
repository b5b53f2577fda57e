"""`make demo`: recommendations and their timings from a running gateway, for a first look.

The servers are not started here: `make demo` runs this inside
``python -m shortlist.common.stack run ... -- python -m shortlist.clients.demo --target
{gateway}``, so the demo is a client like any other and sees only the gRPC contract.
"""

from __future__ import annotations

import argparse
import sys

from shortlist.client import DEFAULT_TARGET, Client, ShortlistError
from shortlist.clients.cli import print_table, recommend_json
from shortlist.v1 import gateway_pb2

# (title, user id, onboarding picks): MovieLens ids, so the bundled dataset shows known titles.
SHOWN = (
    ("known user", "1", ()),
    ("known user", "42", ()),
    ("known user", "414", ()),
    ("brand-new user", "demo-new-user", ()),
    ("new user with onboarding picks (Toy Story, Star Wars)", "demo-onboarding", ("1", "260")),
)


def show(title: str, user_id: str, resp: gateway_pb2.RecommendResponse) -> None:
    out = recommend_json(user_id, resp)
    print(f"\n== {title}: user {user_id!r}, segment {out['segment']}, "
          f"version {resp.version}{', DEGRADED' if resp.degraded else ''}")
    print_table([(n + 1, i["title"], f"{i['score']:.3f}", ",".join(i["sources"]))
                 for n, i in enumerate(out["items"])], ("#", "title", "score", "sources"))
    t = out["timings_ms"]
    print("   timings ms: " + "  ".join(
        f"{k}={t[k]:.2f}" for k in ("total", "gateway", "retrieval", "ranking") if k in t))
    for stage in ("retrieval", "ranking"):
        parts = {k.split(".", 1)[1]: v for k, v in t.items() if k.startswith(stage + ".")}
        if parts:
            print(f"     {stage}: " + "  ".join(f"{k}={v:.2f}" for k, v in parts.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default=DEFAULT_TARGET, help="gateway host:port")
    parser.add_argument("--timeout", type=float, default=5.0, help="deadline in seconds")
    args = parser.parse_args(argv)
    with Client(args.target, timeout=args.timeout) as client:
        try:
            for title, user_id, picks in SHOWN:
                show(title, user_id, client.recommend(user_id, 10, recent_item_ids=picks,
                                                      debug=True))
        except ShortlistError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
