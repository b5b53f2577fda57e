"""`make demo`: start the three servers, show recommendations and timings, stop everything."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import grpc

from shortlist.common.stack import Stack
from shortlist.gateway.cli import print_table, recommend_json
from shortlist.v1 import gateway_pb2, gateway_pb2_grpc


def show(client, title: str, request: gateway_pb2.RecommendRequest) -> None:
    resp = client.Recommend(request, timeout=5.0)
    out = recommend_json(request.user_id, resp)
    print(f"\n== {title}: user {request.user_id!r}, segment {out['segment']}, "
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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifacts", default="artifacts")
    args = parser.parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="shortlist-demo-"))
    print(f"starting retrieval, ranking and gateway on free ports (logs in {logs}) ...")
    with Stack.on_free_ports(Path(args.artifacts), log_dir=logs) as stack:
        with grpc.insecure_channel(stack.address("gateway")) as channel:
            client = gateway_pb2_grpc.GatewayStub(channel)
            for user in ("1", "42", "414"):
                show(client, "known user", gateway_pb2.RecommendRequest(
                    user_id=user, k=10, debug=True))
            show(client, "brand-new user", gateway_pb2.RecommendRequest(
                user_id="demo-new-user", k=10, debug=True))
            show(client, "new user with onboarding picks (Toy Story, Star Wars)",
                 gateway_pb2.RecommendRequest(user_id="demo-onboarding", k=10, debug=True,
                                              recent_item_ids=["1", "260"]))
    print("\nstopped all servers.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
