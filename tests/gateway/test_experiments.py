"""Experiment plans: stable assignment by shares, every refusal, the file that keeps them."""

from __future__ import annotations

import json
import time

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from shortlist.gateway.experiments import (
    DEFAULT,
    ExperimentFile,
    Experiments,
    InvalidExperiment,
    Plan,
    bucket,
    read_experiment,
)
from shortlist.v1 import common_pb2, experiment_pb2

V = experiment_pb2.Variant


def experiment(*variants: V, name: str = "exp1", **kw) -> experiment_pb2.Experiment:
    return experiment_pb2.Experiment(name=name, variants=list(variants), **kw)


def test_no_experiment_serves_everyone_the_default_variant():
    plan = Plan()
    assert not plan.running and plan.assign("u1").name == DEFAULT
    assert read_experiment(experiment_pb2.Experiment()).assign("u2").name == DEFAULT


def test_shares_split_users_in_proportion_and_a_zero_share_gets_nobody():
    plan = read_experiment(experiment(V(name="a", share=3), V(name="b", share=1),
                                      V(name="c", share=0)))
    counts = {"a": 0, "b": 0, "c": 0}
    for u in range(20_000):
        counts[plan.assign(f"user-{u}").name] += 1
    assert counts["c"] == 0
    assert abs(counts["a"] / 20_000 - 0.75) < 0.015  # binomial sd ~0.003
    assert plan.variant("c").name == "c"  # reachable by name


@settings(max_examples=50, deadline=None)
@given(user=st.text(min_size=1, max_size=40), salt=st.text(max_size=20))
def test_assignment_is_stable_and_depends_only_on_salt_and_user(user, salt):
    msg = experiment(V(name="a", share=1), V(name="b", share=1), salt=salt)
    first, again = read_experiment(msg), read_experiment(msg)
    assert first.assign(user) == again.assign(user)
    assert 0.0 <= bucket(salt, user) < 1.0


def test_a_new_salt_reshuffles_users_independently():
    a = read_experiment(experiment(V(name="a", share=1), V(name="b", share=1), salt="one"))
    b = read_experiment(experiment(V(name="a", share=1), V(name="b", share=1), salt="two"))
    users = [f"u{i}" for i in range(4000)]
    same = sum(a.assign(u).name == b.assign(u).name for u in users) / len(users)
    assert 0.45 < same < 0.55  # independent halves agree half of the time


def test_the_salt_defaults_to_the_name():
    named = read_experiment(experiment(V(name="a", share=1), V(name="b", share=1)))
    salted = read_experiment(experiment(V(name="a", share=1), V(name="b", share=1),
                                        salt="exp1"))
    assert all(named.assign(f"u{i}") == salted.assign(f"u{i}") for i in range(200))


def test_shadow_fraction_samples_requests_by_their_id():
    plan = read_experiment(experiment(V(name="a", share=1), shadow=V(name="s"),
                                      shadow_fraction=0.25))
    sampled = sum(plan.shadowed(f"r{i}") for i in range(8000)) / 8000
    assert abs(sampled - 0.25) < 0.03
    assert plan.shadowed("r1") == plan.shadowed("r1")
    assert not read_experiment(experiment(V(name="a", share=1))).shadowed("r1")


REFUSED = [
    ("bad name", experiment(V(name="a", share=1), name="no spaces"), "name: 'no spaces'"),
    ("no positive share", experiment(V(name="a", share=0)), "at least one variant needs"),
    ("negative share", experiment(V(name="a", share=-1)), "variant a: share must be"),
    ("duplicate", experiment(V(name="a", share=1), V(name="a", share=1)),
     "variant a: the name is used twice"),
    ("bad variant name", experiment(V(name="", share=1)), "variants[0].name: ''"),
    ("bad order", experiment(V(name="a", share=1, order="popular")),
     "variant a: order 'popular' must be"),
    ("mmr out of range", experiment(V(name="a", share=1, mmr_lambda=1.5)),
     "variant a: mmr_lambda must be in [0, 1]"),
    ("too many candidates", experiment(V(name="a", share=1, candidates=10**6)),
     "variant a: candidates must be in [0, 10000]"),
    ("half a target", experiment(V(name="a", share=1, retrieval_target="127.0.0.1:1")),
     "variant a: retrieval_target and ranking_target go together"),
    ("named replicas in a list",
     experiment(V(name="a", share=1, retrieval_target="r-a:1,r-b:2",
                  ranking_target="127.0.0.1:2")), "variant a: retrieval_target:"),
    ("bad rule", experiment(V(name="a", share=1, rules=[
        common_pb2.Rule(action=common_pb2.Rule.BOOST, category="Comedy", factor=0.5)])),
     "variant a: rule 1"),
    ("interleave without two arms",
     experiment(V(name="a", share=1), V(name="i", share=1, mode=V.INTERLEAVE, arms=["a"])),
     "variant i: INTERLEAVE needs two different arms"),
    ("interleave of an unknown arm",
     experiment(V(name="a", share=1), V(name="i", share=1, mode=V.INTERLEAVE,
                                          arms=["a", "zz"])),
     "variant i: arm 'zz' must name a SERVE variant"),
    ("interleave with settings",
     experiment(V(name="a", share=1), V(name="b"), V(name="i", share=1, mode=V.INTERLEAVE,
                                                     arms=["a", "b"], order="retrieval")),
     "variant i: an INTERLEAVE variant serves its arms' settings; it cannot set order"),
    ("arms on a served variant", experiment(V(name="a", share=1, arms=["a", "b"])),
     "variant a: arms are for INTERLEAVE variants only"),
    ("shadow named like a variant", experiment(V(name="a", share=1), shadow=V(name="a")),
     "shadow: the name a is a served variant's"),
    ("shadow fraction", experiment(V(name="a", share=1), shadow=V(name="s"),
                                   shadow_fraction=2), "shadow_fraction must be in (0, 1]"),
    ("shadow without variants", experiment_pb2.Experiment(shadow=V(name="s")),
     "shadow: a shadow needs an experiment with variants"),
]


@pytest.mark.parametrize(("msg", "message"), [r[1:] for r in REFUSED],
                         ids=[r[0] for r in REFUSED])
def test_refusals_name_the_field(msg, message):
    with pytest.raises(InvalidExperiment) as err:
        read_experiment(msg)
    assert err.value.status == "INVALID_ARGUMENT"
    assert str(err.value).startswith(message), str(err.value)


def test_an_unknown_variant_name_is_refused_with_the_known_ones():
    plan = read_experiment(experiment(V(name="a", share=1), V(name="b", share=1)))
    with pytest.raises(InvalidExperiment, match="no variant 'zz' \\(variants: a, b\\)"):
        plan.variant("zz")


def test_the_file_keeps_the_experiment_and_other_gateways_follow_it(tmp_path):
    path = tmp_path / "experiment.json"
    writer = Experiments(ExperimentFile(path))
    writer.start()
    reader = Experiments(ExperimentFile(path), poll_s=0.05)
    reader.start()
    try:
        msg = experiment(V(name="a", share=1, mmr_lambda=0.5), V(name="b", share=2))
        plan = writer.set(msg)
        assert json.loads(path.read_text())["set_at"] == plan.set_at
        deadline = time.monotonic() + 5
        while reader.plan.name != "exp1" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert reader.plan.message == plan.message
        assert reader.plan.variant("a").mmr_lambda == 0.5
        # a restarted gateway resumes the same split
        again = Experiments(ExperimentFile(path))
        again.start()
        assert [again.plan.assign(f"u{i}").name for i in range(50)] == \
            [plan.assign(f"u{i}").name for i in range(50)]
        again.stop()
    finally:
        writer.stop()
        reader.stop()


def test_a_refused_experiment_leaves_the_running_one(tmp_path):
    exps = Experiments(ExperimentFile(tmp_path / "e.json"))
    exps.start()
    exps.set(experiment(V(name="a", share=1)))
    with pytest.raises(InvalidExperiment):
        exps.set(experiment(V(name="a", share=-1)))

    def refuse(plan):
        raise RuntimeError("servers disagree")
    with pytest.raises(RuntimeError):
        exps.set(experiment(V(name="b", share=1)), check=refuse)
    assert exps.plan.variant("a").name == "a"
    assert ExperimentFile(tmp_path / "e.json").load()[0].variants[0].name == "a"
    exps.stop()


def test_a_malformed_file_is_logged_and_the_running_experiment_stays(tmp_path, caplog):
    path = tmp_path / "e.json"
    exps = Experiments(ExperimentFile(path), poll_s=0.05)
    exps.start()
    exps.set(experiment(V(name="a", share=1)))
    bad = json_format.MessageToDict(experiment(V(name="a", share=-1)))
    path.write_text(json.dumps({"experiment": bad, "set_at": "x"}))
    exps.reload()
    assert exps.plan.variant("a").share == 1
    assert "experiment file ignored" in caplog.text
    path.write_text("{not json")
    exps.reload()
    assert exps.plan.running
    exps.stop()


def test_ending_an_experiment_writes_an_empty_one(tmp_path):
    exps = Experiments(ExperimentFile(tmp_path / "e.json"))
    exps.start()
    exps.set(experiment(V(name="a", share=1)))
    exps.set(experiment_pb2.Experiment())
    assert not exps.plan.running and exps.plan.assign("u1").name == DEFAULT
    again = Experiments(ExperimentFile(tmp_path / "e.json"))
    again.start()
    assert not again.plan.running
    exps.stop()
    again.stop()
