"""`shortlist experiment` and the experiment flags of recommend and feedback, against a real
gateway (built here, with its own experiment file and write token) in front of the session's
retrieval and ranking servers (only read: no feedback is sent to them here)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from shortlist.clients import cli
from shortlist.gateway.server import create_server as create_gateway
from shortlist.gateway.settings import GatewaySettings


@pytest.fixture
def gateway(stack, tmp_path) -> Iterator[str]:
    server, port = create_gateway(GatewaySettings(
        address="127.0.0.1:0", retrieval_target=stack.address("retrieval"),
        ranking_target=stack.address("ranking"), write_token="s3cret",
        experiment_file=str(tmp_path / "experiment.json"),
        impressions_log=str(tmp_path / "impressions.db")))
    yield f"127.0.0.1:{port}"
    server.stop(0)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_set_show_serve_and_end_an_experiment(gateway, tmp_path, capsys):
    spec = tmp_path / "exp.json"
    spec.write_text(json.dumps({"name": "mmr-test", "variants": [
        {"name": "control", "share": 3},
        {"name": "merged", "share": 1, "order": "retrieval", "candidates": 100}]}))
    code, out, err = run(capsys, "--target", gateway, "experiment", "set", str(spec))
    assert code != 0 and "UNAUTHENTICATED" in err  # the split is a write: token needed
    code, out, err = run(capsys, "--target", gateway, "--token", "s3cret", "experiment", "set",
                         str(spec))
    assert code == 0, err
    assert "experiment mmr-test" in out
    assert "control  75.0%" in out and "order retrieval, 100 candidates" in out
    code, out, _ = run(capsys, "--target", gateway, "experiment", "show", "--json")
    shown = json.loads(out)
    assert shown["experiment"]["variants"][1]["order"] == "retrieval" and shown["set_at"]
    code, out, _ = run(capsys, "--target", gateway, "recommend", "--user", "u5",
                       "--variant", "merged")
    assert code == 0 and "variant=merged" in out and "served by retrieval" in out
    code, out, _ = run(capsys, "--target", gateway, "--token", "s3cret", "experiment", "end")
    assert code == 0 and "no experiment running" in out
    code, out, _ = run(capsys, "--target", gateway, "recommend", "--user", "u5", "--json")
    assert json.loads(out)["variant"] == "default"


def test_a_bad_experiment_file_or_experiment_is_one_clear_error(gateway, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "variants": [{"name": "a", "shares": 1}]}')
    code, _, err = run(capsys, "--target", gateway, "--token", "s3cret", "experiment", "set",
                       str(bad))
    assert code == 2 and "is not an Experiment in protobuf JSON" in err
    bad.write_text('{"name": "x", "variants": [{"name": "a", "share": 1, "order": "best"}]}')
    code, _, err = run(capsys, "--target", gateway, "--token", "s3cret", "experiment", "set",
                       str(bad))
    assert code != 0 and "INVALID_ARGUMENT" in err and "order 'best' must be" in err
    code, _, err = run(capsys, "--target", gateway, "--token", "s3cret", "experiment", "set",
                       str(tmp_path / "missing.json"))
    assert code == 2 and "cannot read" in err
