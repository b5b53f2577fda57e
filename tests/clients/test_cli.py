"""The `shortlist` CLI as a new user meets it: pipes, empty answers, errors, the environment.

The session's real stack (three server processes, ``stack`` in tests/conftest.py) serves the
module; it is only read. The note on scores reordered by diversity needs a low MMR lambda: a
gateway and ranking server of its own (in this process) provide it, beside the stack's
retrieval. Feedback with an event type writes, so it goes through a gateway and retrieval
server of its own, whose event log it reads back.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from shortlist.client import TARGET_ENV, Client
from shortlist.clients import cli
from shortlist.common.events import STANDARD
from shortlist.common.stack import free_port
from shortlist.gateway.server import create_server as create_gateway
from shortlist.gateway.settings import GatewaySettings
from shortlist.ranking.server import create_server as create_ranking
from shortlist.ranking.settings import RankingSettings
from shortlist.retrieval.eventlog import EventLog
from shortlist.retrieval.server import create_server as create_retrieval
from shortlist.retrieval.settings import RetrievalSettings
from shortlist.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, retrieval_pb2

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "shortlist.clients.cli"]


@pytest.fixture(scope="module")
def gateway(stack) -> str:
    return stack.address("gateway")


@pytest.fixture(scope="module")
def low_mmr_gateway(stack, trained) -> Iterator[str]:
    """A gateway whose ranking server re-ranks with MMR lambda 0.5 (the stack's runs with the
    artifact's tuned value, which may be 1.0: no reordering at all)."""
    ranking, kport = create_ranking(RankingSettings(address="127.0.0.1:0", artifacts=trained,
                                                    mmr_lambda=0.5))
    gateway, gport = create_gateway(GatewaySettings(
        address="127.0.0.1:0", retrieval_target=stack.address("retrieval"),
        ranking_target=f"127.0.0.1:{kport}"))
    yield f"127.0.0.1:{gport}"
    gateway.stop(0)
    ranking.stop(0)


@pytest.fixture
def nowhere() -> str:
    """An address where nothing listens."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture(autouse=True)
def no_target_env(monkeypatch):
    monkeypatch.delenv(TARGET_ENV, raising=False)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    assert err.startswith("error: "), err
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    return err.strip()


# ---- pipes ----------------------------------------------------------------------------------

def test_a_reader_that_went_away_gets_no_traceback(gateway):
    """`shortlist recommend | head` where head has already exited: EPIPE on the first write."""
    read, write = os.pipe()
    reader = subprocess.Popen([sys.executable, "-c", "pass"], stdin=read)
    os.close(read)
    reader.wait(timeout=30)  # nobody holds the read end now
    try:
        done = subprocess.run([*CLI, "--target", gateway, "recommend", "--user", "u1"],
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert done.stderr == ""
    assert done.returncode == cli.EXIT_BROKEN_PIPE


def test_piped_into_head(gateway):
    command = shlex.join([*CLI, "--target", gateway, "--json", "recommend", "--user", "u1",
                          "-k", "100"]) + " | head -n 2"
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.splitlines() == ["{", '  "user_id": "u1",']
    assert done.stderr == ""


# ---- health ---------------------------------------------------------------------------------

def test_health_of_an_unknown_service_says_what_is_served(stack, capsys):
    for server, service in (("gateway", "shortlist.v1.Gateway"),
                            ("retrieval", "shortlist.v1.Retrieval")):
        address = stack.address(server)
        code, out, err = run(capsys, "--target", address, "health", "--service", "nope")
        assert code == 1 and out == ""
        line = one_line_error(err)
        assert line.startswith(f"error: health of service 'nope' at {address}: NOT_FOUND: the "
                               "server has no such service (it serves: ")
        assert service in line and "grpc." not in line


def test_health_of_the_whole_server_and_a_named_service(stack, capsys):
    gw = stack.address("gateway")
    assert run(capsys, "--target", gw, "health")[1] == f"{gw} (server): SERVING\n"
    assert run(capsys, "--target", gw, "health", "--service", "shortlist.v1.Gateway")[0] == 0


def test_health_where_nothing_listens(nowhere, capsys):
    code, _, err = run(capsys, "--target", nowhere, "health")
    assert code == 1
    line = one_line_error(err)
    assert line.startswith(f"error: health of the server at {nowhere}: UNAVAILABLE: ")
    assert "is a Shortlist server (gateway, retrieval or ranking) running there?" in line
    assert TARGET_ENV in line


# ---- empty answers --------------------------------------------------------------------------

def test_empty_recommendations_are_a_sentence(gateway, capsys):
    code, out, _ = run(capsys, "--target", gateway, "recommend", "--user", "u1",
                       "--include-category", "NoSuchCategory")
    assert code == 0
    assert ("no recommendations for user u1 (every candidate was filtered out? filters: "
            "--include-category NoSuchCategory)") in out
    assert "title" not in out and "--  ----" not in out


def test_empty_search_is_a_sentence(gateway, capsys):
    code, out, _ = run(capsys, "--target", gateway, "search", "qqqqzzzzxxxx")
    assert code == 0
    assert out == "no items match 'qqqqzzzzxxxx', not even by close spelling\n"
    code, out, _ = run(capsys, "--target", gateway, "--json", "search", "qqqqzzzzxxxx")
    assert json.loads(out)["items"] == []


class CannedGateway(gateway_pb2_grpc.GatewayServicer):
    """Answers a real gateway does not give on cue: no neighbours, a degraded answer."""

    def SimilarItems(self, request, context):
        return retrieval_pb2.SimilarItemsResponse(version="v1")

    def Recommend(self, request, context):
        response = gateway_pb2.RecommendResponse(degraded=True, version="v1")
        for n, score in enumerate((0.9, 0.8)):
            response.items.add(item_id=f"i{n}", score=score, retrieval_rank=n + 1)
        return response


@pytest.fixture
def canned():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    gateway_pb2_grpc.add_GatewayServicer_to_server(CannedGateway(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def test_no_similar_items_is_a_sentence_and_degraded_order_is_explained(canned, capsys):
    code, out, _ = run(capsys, "--target", canned, "similar", "--item", "i0")
    assert code == 0
    assert out == "no items similar to i0 in version v1 (the item has no neighbours yet?)\n"
    code, out, _ = run(capsys, "--target", canned, "recommend", "--user", "u1")
    assert code == 0 and "DEGRADED" in out.splitlines()[0]
    assert cli.DEGRADED_NOTE in out and cli.MMR_NOTE not in out


# ---- explanations ---------------------------------------------------------------------------

class ExplainedGateway(gateway_pb2_grpc.GatewayServicer):
    """A ranked answer whose explanations are known in advance (the real ranker's depend on
    the fitted model): the first item fully explained, the second by features alone, the
    third not at all."""

    def Recommend(self, request, context):
        response = gateway_pb2.RecommendResponse(version="v1", configuration="ranker")
        first = response.items.add(item_id="i3", score=0.9, title="Drama Story 3",
                                   ranking_rank=1, because_of_item_id="i12")
        first.contributions.add(feature="als_score", description="als score", contribution=0.41)
        first.contributions.add(feature="popularity", description="popularity",
                                contribution=-0.12)
        first.contributions.add(feature="events_purchase",
                                description="how often the item got purchase events",
                                contribution=0.0625)
        second = response.items.add(item_id="i4", score=0.8, ranking_rank=2)
        second.contributions.add(feature="trending", description="popular right now",
                                 contribution=0.25)
        response.items.add(item_id="i5", score=0.7, ranking_rank=3)
        return response


@pytest.fixture
def explained():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    gateway_pb2_grpc.add_GatewayServicer_to_server(ExplainedGateway(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def test_explanations_print_in_json_and_as_a_why_column(explained, capsys):
    code, out, _ = run(capsys, "--target", explained, "--json", "recommend", "--user", "u1")
    first, second, third = json.loads(out)["items"]
    assert code == 0 and first["because_of_item_id"] == "i12"
    assert first["contributions"] == [
        {"feature": "als_score", "description": "als score", "contribution": 0.41},
        {"feature": "popularity", "description": "popularity", "contribution": -0.12},
        {"feature": "events_purchase",
         "description": "how often the item got purchase events", "contribution": 0.0625}]
    assert second["because_of_item_id"] == "" and len(second["contributions"]) == 1
    assert (third["because_of_item_id"], third["contributions"]) == ("", [])
    code, out, _ = run(capsys, "--target", explained, "recommend", "--user", "u1")
    _, header, _, *rows, timings = out.splitlines()
    assert code == 0 and header.split()[-1] == "why"
    # the last column is shown whole, though longer than the 60 characters of the others
    assert rows[0].endswith(
        "because i12; als_score +0.41, popularity -0.12, events_purchase +0.06")
    assert rows[1].endswith("trending +0.25") and rows[2].split()[-1] == "0.7000"
    assert timings.startswith("timings (ms)")


def test_no_why_column_without_explanations(canned, capsys):
    code, out, _ = run(capsys, "--target", canned, "recommend", "--user", "u1")
    assert code == 0 and out.splitlines()[1].split() == ["#", "item", "score", "title",
                                                         "sources"]


# ---- the order of the score column ----------------------------------------------------------

def scores_fall(response) -> bool:
    scores = [i.score for i in response.items]
    return all(a >= b for a, b in zip(scores, scores[1:], strict=False))


def test_reordered_scores_are_explained(low_mmr_gateway, capsys):
    gateway = low_mmr_gateway
    with Client(gateway) as client:
        user = next((f"u{u}" for u in range(150)
                     if not scores_fall(client.recommend(f"u{u}", 10))), None)
    assert user, "with MMR lambda 0.5 some user's list should not be sorted by score"
    code, out, _ = run(capsys, "--target", gateway, "recommend", "--user", user)
    lines = out.splitlines()
    assert code == 0
    assert lines[-2] == cli.MMR_NOTE and lines[-1].startswith("timings (ms): ")
    # one item is trivially in score order: no note
    assert cli.MMR_NOTE not in run(capsys, "--target", gateway, "recommend", "--user", user,
                                   "-k", "1")[1]


def test_order_note():
    def response(scores, degraded=False):
        r = gateway_pb2.RecommendResponse(degraded=degraded)
        for s in scores:
            r.items.add(score=s)
        return r

    assert cli.order_note(response([0.9, 0.5, 0.5, 0.1])) == ""
    assert cli.order_note(response([0.9, 0.95, 0.1])) == cli.MMR_NOTE
    assert cli.order_note(response([0.9, 0.1], degraded=True)) == cli.DEGRADED_NOTE


# ---- versions -------------------------------------------------------------------------------

def test_every_versions_column_has_a_header(gateway, capsys):
    code, out, _ = run(capsys, "--target", gateway, "versions")
    header, rule, *rows, following = out.splitlines()
    assert code == 0
    assert header.split() == ["version", "created", "state"]
    assert len(rule.split()) == 3
    serving = [r for r in rows if r.split()[-1] == "serving"]
    assert len(serving) == 1 and len(serving[0].split()) == 3
    assert following == "following: the newest version"


# ---- errors: one line, the call, the address, a hint ----------------------------------------

@pytest.mark.parametrize(("argv", "method"), [
    (["recommend", "--user", "u1"], "Recommend"),
    (["similar", "--item", "i1"], "SimilarItems"),
    (["search", "story"], "SearchItems"),
    (["feedback", "--user", "u1", "--item", "i1"], "RecordInteraction"),
    (["upsert-item", "--item", "x", "--title", "X"], "UpsertItem"),
    (["versions"], "ListVersions"),
    (["rollback", "--latest"], "SetVersion"),
])
def test_nothing_listening_names_the_call_the_address_and_a_hint(nowhere, capsys, argv,
                                                                 method):
    code, out, err = run(capsys, "--target", nowhere, *argv)
    assert code == 1 and out == ""
    line = one_line_error(err)
    assert line.startswith(f"error: {method} to {nowhere} failed: UNAVAILABLE: ")
    assert line.endswith("is a Shortlist gateway running at that address? (choose another "
                         f"with the target argument, --target or ${TARGET_ENV})")


@pytest.mark.parametrize(("argv", "start", "hint"), [
    (["similar", "--item", "no-such-item"], "SimilarItems to {} failed: NOT_FOUND: ",
     "find ids with SearchItems"),
    (["rollback", "--to", "no-such-version"], "SetVersion to {} failed: NOT_FOUND: ",
     "list them with ListVersions"),
    (["recommend", "--user", "u1", "-k", "100000"], "Recommend to {} failed: "
     "INVALID_ARGUMENT: k must be in", "nothing was applied"),
])
def test_server_refusals_are_one_line_with_a_hint(gateway, capsys, argv, start, hint):
    code, _, err = run(capsys, "--target", gateway, *argv)
    line = one_line_error(err)
    assert code == 1
    assert line.startswith("error: " + start.format(gateway))
    assert hint in line


def test_a_backend_address_is_not_a_gateway(stack, capsys):
    retrieval = stack.address("retrieval")
    line = one_line_error(run(capsys, "--target", retrieval, "recommend", "--user", "u1")[2])
    assert line.startswith(f"error: Recommend to {retrieval} failed: UNIMPLEMENTED")
    assert "not retrieval's or ranking's" in line


def test_a_tls_mismatch_is_one_line_from_a_real_process(gateway):
    """TLS to a plaintext server: gRPC's core would log the failed handshake to stderr too."""
    done = subprocess.run([*CLI, "--target", gateway, "--tls-server-name", "x", "versions"],
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"})
    assert done.returncode == 1 and done.stdout == ""
    line = one_line_error(done.stderr)
    assert line.startswith(f"error: ListVersions to {gateway} failed: UNAVAILABLE: ")
    assert "the TLS handshake failed" in line


# ---- the target from the environment --------------------------------------------------------

def test_target_flag_then_environment_then_default(gateway, nowhere, capsys, monkeypatch):
    monkeypatch.setenv(TARGET_ENV, gateway)
    code, out, _ = run(capsys, "--json", "versions")
    assert code == 0 and json.loads(out)["serving"]
    monkeypatch.setenv(TARGET_ENV, nowhere)
    assert run(capsys, "--target", gateway, "versions")[0] == 0  # the flag wins
    assert f"to {nowhere} failed" in run(capsys, "versions")[2]
    monkeypatch.delenv(TARGET_ENV)
    assert cli.build_parser().parse_args(["versions"]).target == "127.0.0.1:50051"


def test_help_names_the_environment(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert f"${TARGET_ENV}" in out and f"{TARGET_ENV}  gateway host:port" in out
    assert "SHORTLIST_TOKEN" in out


# ---- feedback with an event type ------------------------------------------------------------

@pytest.fixture(scope="module")
def writable(stack, trained, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A gateway over a retrieval server of its own (the session's stack is only read), and
    that server's event log, to read back what a write recorded."""
    log_path = tmp_path_factory.mktemp("cli-writes") / "events.db"
    retrieval, rport = create_retrieval(RetrievalSettings(
        address="127.0.0.1:0", artifacts=trained, event_log=log_path))
    gateway, gport = create_gateway(GatewaySettings(
        address="127.0.0.1:0", retrieval_target=f"127.0.0.1:{rport}",
        ranking_target=stack.address("ranking")))
    yield f"127.0.0.1:{gport}", log_path
    gateway.stop(0)
    retrieval.stop(0)


def logged(log_path: Path, user: str) -> list[tuple[str, str]]:
    with EventLog(log_path) as log:
        return [(r.item_id, r.event) for r in log.interactions() if r.user_id == user]


def test_feedback_passes_its_event_type_through(writable, capsys):
    target, log_path = writable
    code, out, _ = run(capsys, "--target", target, "--json", "feedback", "--user", "cli-typed",
                       "--item", "i4", "--event", "Dislike")
    assert code == 0 and json.loads(out)["event"] == "Dislike"
    code, out, _ = run(capsys, "--target", target, "feedback", "--user", "cli-typed",
                       "--item", "i5", "--event", "purchase")
    assert code == 0 and out.startswith("recorded cli-typed -> i5 (purchase) (event #")
    assert run(capsys, "--target", target, "feedback", "--user", "cli-typed",
               "--item", "i6")[0] == 0
    assert logged(log_path, "cli-typed") == [("i4", "dislike"), ("i5", "purchase"), ("i6", "")]


def test_feedback_of_an_unknown_event_type_is_one_line_naming_the_known_ones(writable, capsys):
    target, log_path = writable
    code, out, err = run(capsys, "--target", target, "feedback", "--user", "cli-untyped",
                         "--item", "i4", "--event", "teleport")
    line = one_line_error(err)
    assert code == 1 and out == ""
    assert line.startswith(f"error: RecordInteraction to {target} failed: INVALID_ARGUMENT: "
                           "unknown event type 'teleport'; this model knows: ")
    assert all(name in line for name in STANDARD)
    assert logged(log_path, "cli-untyped") == []


def test_feedback_help_lists_the_standard_event_types(capsys):
    # The CLI may import only the contract, so it keeps its own copy of the standard names.
    assert cli.STANDARD_EVENTS == tuple(STANDARD)
    with pytest.raises(SystemExit):
        cli.main(["feedback", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--event TYPE" in help_text
    assert ", ".join(STANDARD) in help_text


# ---- business rules -------------------------------------------------------------------------

R = common_pb2.Rule


def test_rule_flags_parse_into_rules_in_order():
    args = cli.build_parser().parse_args([
        "recommend", "--user", "u1", "--boost", "category:Comedy=2", "--pin", "i5@1",
        "--bury", "item:i3=1e3", "--exclude", "i1", "category:Drama", "--exclude", "item:i9",
        "--pin", "item:i7@2", "--boost", "category:A=B=3"])
    assert cli.recommend_rules(args) == [
        R(action=R.BOOST, category="Comedy", factor=2), R(action=R.PIN, item_id="i5", position=1),
        R(action=R.BURY, item_id="i3", factor=1000), R(action=R.PIN, item_id="i7", position=2),
        R(action=R.BOOST, category="A=B", factor=3),
        R(action=R.EXCLUDE, category="Drama"), R(action=R.EXCLUDE, item_id="i9")]
    assert args.exclude == ["i1", "category:Drama", "item:i9"]  # i1 stays a filter
    assert cli.recommend_rules(cli.build_parser().parse_args(["recommend", "--user", "u"])) == []


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--boost", "Comedy=2", "the target must be item:ID or category:NAME, got 'Comedy'"),
    ("--boost", "category:Comedy", "expected TARGET=FACTOR, got 'category:Comedy'"),
    ("--bury", "item:i1=lots", "the factor must be a number, got 'lots' in 'item:i1=lots'"),
    ("--bury", "category:=2", "nothing after 'category:' in 'category:'"),
    ("--pin", "i5", "expected ITEM@POSITION, got 'i5'"),
    ("--pin", "i5@first", "the position must be a whole number, got 'first' in 'i5@first'"),
    ("--pin", "category:Drama@1", "a pin names one item, not a category: 'category:Drama@1'"),
    ("--exclude", "item:", "nothing after 'item:' in 'item:'"),
])
def test_a_malformed_rule_flag_is_a_usage_error_naming_it(capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--target", "127.0.0.1:1", "recommend", "--user", "u1", flag, value])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"shortlist recommend: error: argument {flag}: {message}")


def test_rule_flags_reach_the_server(gateway, capsys):
    from tests.conftest import GENRES

    code, out, _ = run(capsys, "--target", gateway, "--json", "recommend", "--user", "u0")
    plain = [i["item_id"] for i in json.loads(out)["items"]]
    assert code == 0 and all(i["rules"] == [] for i in json.loads(out)["items"])
    pinned = next(f"i{n}" for n in range(1, 240, 6) if f"i{n}" not in plain)
    code, out, _ = run(capsys, "--target", gateway, "--json", "recommend", "--user", "u0",
                       "--pin", f"{pinned}@1", "--exclude", f"category:{GENRES[0]}",
                       "--boost", f"category:{GENRES[2]}=1000")
    items = json.loads(out)["items"]
    assert code == 0 and items[0]["item_id"] == pinned
    assert items[0]["rules"] == [f"pin item={pinned} at 1"]
    assert any(i["rules"] == [f"boost category={GENRES[2]} x1000"] for i in items)
    assert not {i["item_id"] for i in items} & {f"i{n}" for n in range(0, 240, 6)}  # GENRES[0]
    # the table grows a rules column, only when rules touched an item
    code, out, _ = run(capsys, "--target", gateway, "recommend", "--user", "u0",
                       "--pin", f"{pinned}@1")
    header = out.splitlines()[1].split()  # then ranking's "why", if it explained the order
    assert code == 0 and "rules" in header and f"pin item={pinned} at 1" in out
    code, out, _ = run(capsys, "--target", gateway, "recommend", "--user", "u0")
    assert "rules" not in out.splitlines()[1].split()


def test_a_rule_the_server_refuses_is_one_line(gateway, capsys):
    code, out, err = run(capsys, "--target", gateway, "recommend", "--user", "u0",
                         "--boost", "category:Comedy=0.5")
    line = one_line_error(err)
    assert code == 1 and out == ""
    assert line.startswith(f"error: Recommend to {gateway} failed: INVALID_ARGUMENT: rule 1 "
                           "(BOOST): factor must be greater than 1")
    assert "nothing was applied" in line
