"""An A/B experiment end to end: every server a real process, simulated users clicking what
they like, and `shortlist-train experiment-report` reading the gateway's impressions log.

Users of the synthetic data each prefer one genre (tests/conftest.py): a simulated user clicks
a served item of their genre far more often than another. One variant serving the trending
generator's order alone (popularity, blind to the user) must come out significantly worse
than the ranked pipeline; two identical variants must not be told apart.
"""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from shortlist.common.stack import Stack
from shortlist.training.__main__ import main as train_main
from shortlist.v1 import experiment_pb2, gateway_pb2, gateway_pb2_grpc, retrieval_pb2
from tests.conftest import GENRES

pytestmark = pytest.mark.e2e
V = experiment_pb2.Variant
USERS = [f"u{n}" for n in range(150)]


def likes(user: str, item: str) -> bool:
    return int(user[1:]) % len(GENRES) == int(item[1:]) % len(GENRES)


def run_experiment(stub, name: str, variants: list[V], rounds: int, seed: int) -> dict:
    """Every user asks ``rounds`` times and clicks (through the gateway, naming the list it
    followed) each served item with a probability that falls with its position: 0.12 at the
    top for an item of their genre, 0.01 otherwise. Returns the variant each user was served."""
    stub.SetExperiment(experiment_pb2.SetExperimentRequest(
        experiment=experiment_pb2.Experiment(name=name, variants=variants)), timeout=30)
    rng = np.random.default_rng(seed)
    assigned = {}
    for _ in range(rounds):
        for user in USERS:
            resp = stub.Recommend(gateway_pb2.RecommendRequest(user_id=user, k=10), timeout=10)
            assigned[user] = resp.variant
            for pos, item in enumerate(resp.items):
                p = (0.12 if likes(user, item.item_id) else 0.01) / (1 + 0.1 * pos)
                if rng.random() < p:
                    stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
                        user_id=user, item_id=item.item_id,
                        follows_request_id=resp.request_id), timeout=10)
    return assigned


def report(impressions, experiment: str, control: str, out) -> dict:
    code = train_main(["experiment-report", "--impressions", str(impressions),
                       "--experiment", experiment, "--control", control, "--json", str(out)])
    assert code == 0
    return json.loads(out.read_text())


def by_variant(data: dict) -> dict:
    return {v["variant"]: v for v in data["variants"]}


def test_a_planted_difference_is_significant_and_identical_variants_are_not(
        trained, tmp_path, capsys):
    state = tmp_path / "state"
    impressions = state / "impressions.db"
    env = {"SHORTLIST_GATEWAY_IMPRESSIONS_LOG": str(impressions),
           "SHORTLIST_GATEWAY_EXPERIMENT_FILE": str(state / "experiment.json")}
    with Stack.on_free_ports(trained, log_dir=tmp_path / "logs", state_dir=state,
                             env=env) as stack:
        with grpc.insecure_channel(stack.address("gateway")) as channel:
            stub = gateway_pb2_grpc.GatewayStub(channel)
            planted = run_experiment(stub, "planted", [
                V(name="control", share=1), V(name="popular", share=1,
                                              order="generator:trending")], 2, seed=1)
            same = run_experiment(stub, "same", [V(name="a", share=1), V(name="b", share=1)],
                                  2, seed=2)
    # stopping the gateway flushed its log; assignment was stable and about even
    assert 50 <= sum(v == "popular" for v in planted.values()) <= 100
    assert 50 <= sum(v == "a" for v in same.values()) <= 100

    planted = by_variant(report(impressions, "planted", "control", tmp_path / "p.json"))
    printed = capsys.readouterr().out
    assert "popular vs control" in printed and "significant" in printed
    assert planted["control"]["n_users"] + planted["popular"]["n_users"] == len(USERS)
    assert planted["control"]["n_impressions"] == 2 * planted["control"]["n_users"]
    for metric in ("hit_rate", "ndcg"):
        worse = planted["popular"][metric]
        assert worse["delta"] < 0 and worse["significant"], (metric, worse)

    same = by_variant(report(impressions, "same", "a", tmp_path / "s.json"))
    for metric in ("hit_rate", "ndcg"):
        assert not same["b"][metric]["significant"], (metric, same["b"][metric])
    # the same variants served alike: their means are within each other's intervals
    assert same["a"]["hit_rate"]["ci_low"] <= same["b"]["hit_rate"]["mean"] \
        <= same["a"]["hit_rate"]["ci_high"]
