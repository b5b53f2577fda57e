"""Experiments measured with real processes: what a shadow costs the served request, and
whether the experiment report finds a planted difference and only that.

A stack on free ports (``common.stack.Stack``, every server a process) serving a small
synthetic version, then:

1. **Shadow cost.** Recommend paced at ``--rate`` for ``--seconds`` (the open-loop driver of
   ``shortlist-bench``, latency from each request's due time), alternately with no experiment
   and with every request shadowed by a variant in retrieval's order, ``--rounds`` times each.
   Reported: p50 and p99 of each mode (median over its rounds) and the difference, plus how
   many shadow requests were scored. ``--shadow-duty`` sets the gateway's duty cycle (1.0:
   every request shadowed, as far as the queue allows).
2. **Planted difference.** ``--users`` users of the data each ask twice and click what they
   are served with a probability that follows their own taste: the share of the item's topic
   in their training history (0.4 x share, at most 0.4, times a position discount). Experiment
   "planted" splits them between the ranked pipeline ("control") and the trending
   generator's order alone ("popular"); experiment "same" between two identical variants. The
   gateway's impressions log is then read by the experiment report, as
   `shortlist-train experiment-report` would.

    python -m shortlist.perf.experiment [--artifacts DIR --data DIR] [--output FILE]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from shortlist.clients.load import channels, open_loop
from shortlist.common.impressions import read_log
from shortlist.common.stack import Stack
from shortlist.perf.workload import fit_small_artifact
from shortlist.training.experiment_report import experiment_report
from shortlist.v1 import experiment_pb2, gateway_pb2, gateway_pb2_grpc, retrieval_pb2

V = experiment_pb2.Variant


def tastes(data: Path) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Each user's share of each topic in their history, and each item's topic."""
    topic = {}
    with open(data / "items.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            topic[row["item_id"]] = (row.get("categories") or "").split("|")[0]
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    with open(data / "interactions.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            counts[row["user_id"]][topic.get(row["item_id"], "")] += 1
    return ({u: {t: n / sum(c.values()) for t, n in c.items()} for u, c in counts.items()},
            topic)


def set_experiment(stub, name: str = "", variants: Sequence[V] = (),
                   shadow: V | None = None) -> None:
    msg = experiment_pb2.Experiment(name=name, variants=list(variants))
    if shadow is not None:
        msg.shadow.CopyFrom(shadow)
    stub.SetExperiment(experiment_pb2.SetExperimentRequest(experiment=msg), timeout=30)


def shadow_cost(stack: Stack, stub, users: Sequence[str], rate: float, seconds: float,
                rounds: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {"off": [], "shadowed": []}
    for _ in range(rounds):
        for mode in ("off", "shadowed"):
            if mode == "off":
                set_experiment(stub)
            else:
                set_experiment(stub, "shadow-cost", [V(name="control", share=1)],
                               V(name="merged", order="retrieval"))
            with channels(stack.address("gateway")) as chans:
                call = gateway_pb2_grpc.GatewayStub(chans[0]).Recommend
                result = open_loop(call, lambda i: gateway_pb2.RecommendRequest(
                    user_id=users[i % len(users)], k=10), rate, duration_s=seconds,
                    warmup=20)
            lat = result.latencies_ms()
            runs[mode].append({"p50": float(np.percentile(lat, 50)),
                               "p99": float(np.percentile(lat, 99)),
                               "ok": result.ok, "offered": result.offered})
            print(f"  {mode}: p50 {runs[mode][-1]['p50']:.2f} ms, p99 "
                  f"{runs[mode][-1]['p99']:.2f} ms, {result.ok}/{result.offered} ok",
                  flush=True)
    set_experiment(stub)
    med = {mode: {q: float(np.median([r[q] for r in rs])) for q in ("p50", "p99")}
           for mode, rs in runs.items()}
    return {"rate": rate, "seconds": seconds, "rounds": rounds, "runs": runs, "median": med,
            "p99_added_ms": med["shadowed"]["p99"] - med["off"]["p99"],
            "p50_added_ms": med["shadowed"]["p50"] - med["off"]["p50"]}


def clicks(stub, name: str, variants: Sequence[V], users: Sequence[str],
           taste: dict[str, dict[str, float]], topic: dict[str, str], seed: int) -> None:
    set_experiment(stub, name, variants)
    rng = np.random.default_rng(seed)
    for _ in range(2):
        for user in users:
            resp = stub.Recommend(gateway_pb2.RecommendRequest(user_id=user, k=10), timeout=10)
            for pos, item in enumerate(resp.items):
                share = taste.get(user, {}).get(topic.get(item.item_id, ""), 0.0)
                if rng.random() < min(0.4, 0.4 * share) / (1 + 0.2 * pos):
                    stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
                        user_id=user, item_id=item.item_id,
                        follows_request_id=resp.request_id), timeout=10)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shortlist.perf.experiment", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", type=Path, default=None,
                   help="artifact root to serve (with --data; default: fit a small one)")
    p.add_argument("--data", type=Path, default=None, help="the dataset it was fitted on")
    p.add_argument("--rate", type=float, default=50.0, help="Recommend/s in the shadow runs")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each shadow run")
    p.add_argument("--rounds", type=int, default=3, help="shadow runs per mode")
    p.add_argument("--users", type=int, default=600, help="simulated users per experiment")
    p.add_argument("--shadow-duty", type=float, default=None,
                   help="the gateway's SHORTLIST_GATEWAY_SHADOW_DUTY_CYCLE (default: its own)")
    p.add_argument("--output", type=Path, default=None, help="also write the results as JSON")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="shortlist-experiment-") as tmp:
        if args.artifacts is None:
            root = fit_small_artifact(Path(tmp) / "fit")
            data = Path(tmp) / "fit" / "data"
        else:
            root, data = args.artifacts, args.data
        taste, topic = tastes(data)
        users = sorted(taste)[: args.users]
        state = Path(tmp) / "state"
        env = {"SHORTLIST_GATEWAY_IMPRESSIONS_LOG": str(state / "impressions.db"),
               "SHORTLIST_GATEWAY_EXPERIMENT_FILE": str(state / "experiment.json")}
        if args.shadow_duty is not None:
            env["SHORTLIST_GATEWAY_SHADOW_DUTY_CYCLE"] = str(args.shadow_duty)
        results: dict[str, Any] = {}
        with Stack.on_free_ports(root, log_dir=Path(tmp) / "logs", state_dir=state,
                                 env=env) as stack:
            with grpc.insecure_channel(stack.address("gateway")) as channel:
                stub = gateway_pb2_grpc.GatewayStub(channel)
                print("shadow cost:", flush=True)
                results["shadow"] = shadow_cost(stack, stub, users, args.rate, args.seconds,
                                                args.rounds)
                t0 = time.perf_counter()
                clicks(stub, "planted", [V(name="control", share=1),
                                         V(name="popular", share=1,
                                           order="generator:trending")],
                       users, taste, topic, seed=1)
                clicks(stub, "same", [V(name="a", share=1), V(name="b", share=1)], users,
                       taste, topic, seed=2)
                results["simulation_s"] = round(time.perf_counter() - t0, 1)
        # the gateway flushed its log when it stopped
        log_path = [state / "impressions.db"]
        shadows = read_log(log_path, experiment="shadow-cost").shadows
        results["shadow"]["scored"] = len(shadows)
        results["shadow"]["mean_overlap"] = float(np.mean([s.overlap for s in shadows])
                                                  ) if shadows else None
        for name, control in (("planted", "control"), ("same", "a")):
            report = experiment_report(read_log(log_path, experiment=name), control=control)
            results[name] = report.to_json()
            print(report.to_markdown(), flush=True)
    print(json.dumps({k: results["shadow"][k] for k in ("median", "p50_added_ms",
                                                         "p99_added_ms", "scored")}))
    if args.output:
        args.output.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
