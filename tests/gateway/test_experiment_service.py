"""Experiments through a real gateway (built here, with its own experiment file and
impressions log) in front of the session's real retrieval and ranking servers (only read)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import grpc
import pytest

from shortlist.common.impressions import read_log
from shortlist.common.stack import free_ports
from shortlist.gateway.server import create_server as create_gateway
from shortlist.gateway.settings import GatewaySettings
from shortlist.v1 import experiment_pb2, gateway_pb2, gateway_pb2_grpc
from tests.common.test_metrics import scrape

V = experiment_pb2.Variant
C = grpc.StatusCode
USERS = [f"u{n}" for n in range(40)]


@contextmanager
def gateway(stack, tmp_path, **overrides):
    [metrics_port] = free_ports(1)
    settings = GatewaySettings(address="127.0.0.1:0",
                               retrieval_target=stack.address("retrieval"),
                               ranking_target=stack.address("ranking"),
                               experiment_file=str(tmp_path / "experiment.json"),
                               impressions_log=str(tmp_path / "impressions.db"),
                               metrics_port=metrics_port, **overrides)
    server, port = create_gateway(settings)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield gateway_pb2_grpc.GatewayStub(channel), metrics_port
    finally:
        channel.close()
        server.stop(0).wait()
        for thread in threading.enumerate():  # it flushes the impressions log
            if thread.name == "close-on-stop":
                thread.join(10)


def served(stub, user: str, **kw) -> gateway_pb2.RecommendResponse:
    return stub.Recommend(gateway_pb2.RecommendRequest(user_id=user, k=10, **kw), timeout=10)


def set_experiment(stub, *variants: V, **kw) -> experiment_pb2.ExperimentState:
    return stub.SetExperiment(experiment_pb2.SetExperimentRequest(
        experiment=experiment_pb2.Experiment(name="exp1", variants=list(variants), **kw)),
        timeout=30)


def test_a_split_assigns_users_stably_and_names_the_variant_everywhere(stack, tmp_path):
    with gateway(stack, tmp_path) as (stub, metrics_port):
        assert served(stub, "u1").variant == "default"
        state = set_experiment(stub, V(name="control", share=1),
                               V(name="merged", share=1, order="retrieval"))
        assert state.set_at and state.experiment.name == "exp1"
        assert stub.GetExperiment(experiment_pb2.GetExperimentRequest(), timeout=5) == state
        first = {u: served(stub, u) for u in USERS}
        again = {u: served(stub, u).variant for u in USERS}
        assert {u: r.variant for u, r in first.items()} == again  # stable
        by_variant = {v: [u for u in USERS if again[u] == v] for v in ("control", "merged")}
        assert all(len(us) >= 10 for us in by_variant.values())  # ~50/50 of 40
        assert {first[u].configuration for u in by_variant["merged"]} == {"retrieval"}
        assert all(first[u].configuration.startswith("ranker")
                   for u in by_variant["control"])
        # a variant by hand, and an unknown one refused
        assert served(stub, by_variant["control"][0], variant="merged").variant == "merged"
        with pytest.raises(grpc.RpcError) as err:
            served(stub, "u1", variant="nope")
        assert err.value.code() == C.INVALID_ARGUMENT
        assert "no variant 'nope' (variants: control, merged)" in err.value.details()
        samples = scrape(metrics_port)
        for v in ("control", "merged"):
            key = ("shortlist_variant_requests_total", (("degraded", "false"), ("variant", v)))
            assert samples[key] >= 2 * len(by_variant[v])
    log = read_log([tmp_path / "impressions.db"])
    rows = {(i.request_id): i for i in log.impressions if i.experiment == "exp1"}
    for user, resp in first.items():
        row = rows[resp.request_id]
        assert row.user_id == user and row.variant == resp.variant
        assert list(row.items) == [it.item_id for it in resp.items]


def test_a_shadow_never_changes_what_is_served_and_is_compared(stack, tmp_path):
    # every request shadowed (no duty cycle): one comparison per served request
    with gateway(stack, tmp_path, shadow_duty_cycle=1.0) as (stub, metrics_port):
        before = {u: [i.item_id for i in served(stub, u).items] for u in USERS[:20]}
        set_experiment(stub, V(name="control", share=1),
                       shadow=V(name="merged-shadow", order="retrieval"))
        during = {u: [i.item_id for i in served(stub, u).items] for u in USERS[:20]}
        assert during == before
        deadline = time.monotonic() + 20
        key = ("shortlist_shadow_requests_total",
               (("outcome", "scored"), ("variant", "merged-shadow")))
        while scrape(metrics_port).get(key, 0) < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        samples = scrape(metrics_port)
        assert samples[key] == 20
        assert samples[("shortlist_shadow_overlap_count", (("variant", "merged-shadow"),))] == 20
    shadows = read_log([tmp_path / "impressions.db"]).shadows
    assert len(shadows) == 20
    assert all(s.served_variant == "control" and s.shadow_variant == "merged-shadow"
               and 0.0 <= s.overlap <= 1.0 for s in shadows)
    assert any(s.overlap < 1.0 for s in shadows)  # the merged order is another list


def test_interleaving_drafts_from_both_arms_and_names_each_items_arm(stack, tmp_path):
    with gateway(stack, tmp_path) as (stub, _):
        set_experiment(stub, V(name="ranker"), V(name="merged", order="retrieval"),
                       V(name="both", share=1, mode=V.INTERLEAVE, arms=["ranker", "merged"]))
        resp = served(stub, "u3")
        a = [i.item_id for i in served(stub, "u3", variant="ranker").items]
        b = [i.item_id for i in served(stub, "u3", variant="merged").items]
    assert resp.variant == "both"
    assert resp.configuration.startswith("interleave(ranker")
    items = [i.item_id for i in resp.items]
    assert len(items) == len(set(items)) == 10
    teams = [i.team for i in resp.items]
    assert set(teams) <= {"ranker", "merged"} and abs(teams.count("ranker") - 5) <= 1
    for item in resp.items:
        assert item.item_id in (a if item.team == "ranker" else b)


def test_set_experiment_checks_versions_and_refuses_bad_experiments(stack, tmp_path):
    version = stack_version(stack)
    target = dict(retrieval_target=stack.address("retrieval"),
                  ranking_target=stack.address("ranking"))
    with gateway(stack, tmp_path) as (stub, _):
        with pytest.raises(grpc.RpcError) as err:
            set_experiment(stub, V(name="old", share=1, version="v-not-served", **target))
        assert err.value.code() == C.FAILED_PRECONDITION
        assert "retrieval serves version" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            set_experiment(stub, V(name="a", share=-1))
        assert err.value.code() == C.INVALID_ARGUMENT
        assert served(stub, "u1").variant == "default"  # nothing half-installed
        set_experiment(stub, V(name="pinned", share=1, version=version, **target))
        assert served(stub, "u1").variant == "pinned"
        stub.SetExperiment(experiment_pb2.SetExperimentRequest(), timeout=5)  # end it
        assert served(stub, "u1").variant == "default"


def test_a_restarted_gateway_resumes_the_experiment(stack, tmp_path):
    with gateway(stack, tmp_path) as (stub, _):
        set_experiment(stub, V(name="a", share=1), V(name="b", share=1))
        assigned = {u: served(stub, u).variant for u in USERS[:10]}
    with gateway(stack, tmp_path) as (stub, _):
        assert {u: served(stub, u).variant for u in USERS[:10]} == assigned


def stack_version(stack) -> str:
    from shortlist.common import artifacts

    return artifacts.resolve(stack.artifacts).name
