"""`shortlist explain` against the session's real stack (only read): it accounts for every
item of a user's top 10, and says why an item is not there."""

from __future__ import annotations

import csv
import json

import pytest

from shortlist.clients import cli


@pytest.fixture(scope="module")
def target(stack) -> str:
    return stack.address("gateway")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def explain(capsys, target: str, *argv: str) -> dict:
    code, out, err = run(capsys, "--target", target, "explain", "--json", *argv)
    assert code == 0, err
    return json.loads(out)


def test_every_item_of_the_top_10_is_accounted_for(target, capsys):
    code, out, _ = run(capsys, "--target", target, "recommend", "--user", "u5", "--json")
    served = [i["item_id"] for i in json.loads(out)["items"]]
    got = explain(capsys, target, "--user", "u5")
    assert [e["itemId"] for e in got["items"]] == served and len(served) == 10
    for n, e in enumerate(got["items"]):
        assert e["verdict"] == "RECOMMENDED"
        assert e["item"]["rankingRank"] == n + 1
        assert "candidates" in e["reason"] and "retrieval merged it" in e["reason"]
        assert e["item"]["sources"] and e["item"]["contributions"]
    code, out, _ = run(capsys, "--target", target, "explain", "--user", "u5")
    assert code == 0 and out.count("the ranker scored it") == 10


def test_why_not_an_item(target, synthetic_dir, capsys):
    top = explain(capsys, target, "--user", "u5")["items"]
    first, category = top[0]["itemId"], top[0]["item"]["categories"][0]

    got = explain(capsys, target, "--user", "u5", "--item", first, "--exclude-category",
                  category)["items"][0]
    assert got["verdict"] == "FILTERED" and category in got["reason"]
    got = explain(capsys, target, "--user", "u5", "--item", first, "--exclude",
                  f"item:{first}")["items"][0]
    assert got["verdict"] == "FILTERED" and "excluded by a business rule" in got["reason"]

    with open(synthetic_dir / "interactions.csv") as fh:
        seen = next(r["item_id"] for r in csv.DictReader(fh) if r["user_id"] == "u5")
    got = explain(capsys, target, "--user", "u5", "--item", seen)["items"][0]
    assert got["verdict"] == "SEEN"
    got = explain(capsys, target, "--user", "u5", "--item", "no-such-item")["items"][0]
    assert got["verdict"] == "UNKNOWN_ITEM"

    deeper = explain(capsys, target, "--user", "u5", "-k", "30")["items"]
    below = deeper[20]["itemId"]
    got = explain(capsys, target, "--user", "u5", "--item", below)["items"][0]
    assert got["verdict"] == "RANKED_BELOW_K" and got["item"]["rankingRank"] > 10
    assert got["reason"].startswith("ranked below the top 10")

    pinned = explain(capsys, target, "--user", "u5", "--item", below, "--pin",
                     f"{below}@1")["items"][0]
    assert pinned["verdict"] == "RECOMMENDED" and pinned["item"]["rankingRank"] == 1
    assert "pin item=" in pinned["reason"]

    code, out, _ = run(capsys, "--target", target, "explain", "--user", "u5", "--item", below)
    assert code == 0 and "[ranked below k]" in out
