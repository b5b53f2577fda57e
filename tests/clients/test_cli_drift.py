"""`shortlist drift` against real /metrics endpoints: the session's stack (only read: its
windows hold whatever other tests sent, so the check there is that the table and the exit code
agree), and servers of its own in this process whose traffic it controls, for the verdicts and
exit codes."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from shortlist.clients import cli
from shortlist.common import artifacts, drift
from shortlist.common.stack import DEFAULT_METRICS_PORTS, free_port
from shortlist.ranking.server import create_server as create_ranking
from shortlist.ranking.settings import RankingSettings
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.retrieval.server import create_server as create_retrieval
from shortlist.retrieval.settings import RetrievalSettings
from shortlist.training.drift import reference_users
from shortlist.training.params import FitParams
from shortlist.v1 import gateway_pb2, gateway_pb2_grpc, ranking_pb2_grpc, retrieval_pb2
from shortlist.v1 import retrieval_pb2_grpc as rpc
from tests.ranking.test_drift import reference_requests

# Requests per window: replaying this many of the reference's users reads as the reference
# (the ranking scores of 20 users moved PSI past 0.1 by sampling alone on one artifact; the
# server-side test, tests/ranking/test_drift.py, replays 150).
WINDOW = 100
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["drift", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_cli_reads_the_thresholds_and_ports_of_the_servers():
    """The CLI may not import them (clients know only the contract): kept equal here."""
    assert (cli.DRIFT_WATCH, cli.DRIFT_RETRAIN) == (drift.WATCH, drift.RETRAIN)
    for server, address in cli.DRIFT_METRICS.items():
        assert address == f"127.0.0.1:{DEFAULT_METRICS_PORTS[server]}"
    for psi in (0.0, 0.05, 0.1, 0.2, 0.25, 0.26, 3.0):
        assert cli.drift_verdict(psi, 100, 100) == drift.verdict(psi)
    assert cli.drift_verdict(3.0, 99, 100) == cli.drift_verdict(None, 0, 0) == "too few"


@pytest.mark.e2e
def test_against_the_stack_the_table_and_the_exit_code_agree(stack, capsys):
    with grpc.insecure_channel(stack.address("gateway")) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        for user in ("u1", "u2", "u3"):
            stub.Recommend(gateway_pb2.RecommendRequest(user_id=user, k=10), timeout=10)
    addresses = ("--retrieval-metrics", stack.metrics_address("retrieval"),
                 "--ranking-metrics", stack.metrics_address("ranking"))
    code, out, err = run(capsys, *addresses, "--json")
    report = json.loads(out)
    assert not report["errors"] and not report["no_reference"], err
    rows = {(r["server"], r["signal"]): r for r in report["signals"]}
    assert set(rows) == {("retrieval", "sources"), ("retrieval", "segment"),
                         ("ranking", "score"), ("ranking", "popularity")}
    assert all(r["observations"] >= 3 for r in rows.values())
    for r in rows.values():
        assert r["verdict"] == cli.drift_verdict(r["psi"], r["observations"], 100)
    retrain = any(r["verdict"] == "retrain" for r in rows.values())
    assert code == (cli.EXIT_RETRAIN if retrain else 0)
    code, out, _ = run(capsys, *addresses)
    assert out.splitlines()[0].split() == ["server", "signal", "psi", "observations", "verdict"]
    assert len([line for line in out.splitlines() if line.startswith(("retrieval", "ranking"))
                ]) == 4


@dataclass
class Own:
    retrieval: rpc.RetrievalStub
    ranking: ranking_pb2_grpc.RankingStub
    args: tuple[str, ...]


@pytest.fixture(scope="module")
def own(trained, tmp_path_factory) -> Iterator[Own]:
    ports = {"retrieval": free_port(), "ranking": free_port()}
    retrieval, rport = create_retrieval(RetrievalSettings(
        address="127.0.0.1:0", artifacts=trained, metrics_port=ports["retrieval"],
        event_log=tmp_path_factory.mktemp("drift-cli") / "events.db", drift_window=WINDOW))
    ranking, kport = create_ranking(RankingSettings(
        address="127.0.0.1:0", artifacts=trained, metrics_port=ports["ranking"],
        drift_window=WINDOW))
    rchan = grpc.insecure_channel(f"127.0.0.1:{rport}")
    kchan = grpc.insecure_channel(f"127.0.0.1:{kport}")
    yield Own(rpc.RetrievalStub(rchan), ranking_pb2_grpc.RankingStub(kchan),
              ("--retrieval-metrics", f"127.0.0.1:{ports['retrieval']}",
               "--ranking-metrics", f"http://127.0.0.1:{ports['ranking']}/metrics"))
    rchan.close()
    kchan.close()
    retrieval.stop(0)
    ranking.stop(0)


def verdicts(out: str) -> dict[tuple[str, str], str]:
    return {(w[0], w[1]): " ".join(w[4:]) for w in map(str.split, out.splitlines())
            if w and w[0] in ("retrieval", "ranking") and len(w) >= 5}


def test_verdicts_and_exit_codes(own, trained, tmp_path, capsys, monkeypatch):
    # nothing served yet: nothing to judge
    code, out, _ = run(capsys, *own.args)
    assert code == 0 and set(verdicts(out).values()) == {"too few"}

    models = RetrievalModels.load(artifacts.resolve(trained))
    for user in reference_users(models, FitParams().seed)[:WINDOW].tolist():
        own.retrieval.Retrieve(retrieval_pb2.RetrieveRequest(user_id=models.users.id(user)),
                               timeout=10)
    for req in reference_requests(trained)[:WINDOW]:
        own.ranking.Rank(req, timeout=10)
    code, out, _ = run(capsys, *own.args, "--min-observations", "10")
    assert code == 0, out
    assert set(verdicts(out).values()) == {"stable"} and len(verdicts(out)) == 4

    for n in range(WINDOW):  # only users the version never saw
        own.retrieval.Retrieve(retrieval_pb2.RetrieveRequest(user_id=f"cold-{n}"), timeout=10)
    plot = tmp_path / "drift.png"
    code, out, err = run(capsys, *own.args, "--min-observations", "10", "--plot", str(plot))
    assert code == cli.EXIT_RETRAIN, (out, err)
    got = verdicts(out)
    assert got[("retrieval", "segment")] == "retrain"
    assert got[("ranking", "score")] == "stable"
    if HAS_MATPLOTLIB:  # the report extra
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # without matplotlib (the optional report extra) the table and the exit code stand
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run(capsys, *own.args, "--plot", str(tmp_path / "none.png"))
    assert code == cli.EXIT_RETRAIN and "matplotlib is not installed" in err
    assert not (tmp_path / "none.png").exists()


def test_an_unreachable_endpoint_is_exit_1_naming_it(own, capsys):
    dead = f"127.0.0.1:{free_port()}"
    code, out, err = run(capsys, "--retrieval-metrics", dead, *own.args[2:])
    assert code == 1
    assert f"retrieval /metrics at http://{dead}/metrics" in err
    assert "ranking" in out  # what could be read is still shown
