"""End to end: the session's three server processes (``stack``, tests/conftest.py) serving the
artifact fitted on the synthetic dataset, called like a client would. Only reads: stopping a
server is tests/reliability/test_faults.py's business, on a stack of its own."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from shortlist.clients import cli
from shortlist.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stub(stack):
    with grpc.insecure_channel(stack.address("gateway")) as channel:
        yield gateway_pb2_grpc.GatewayStub(channel)


@pytest.fixture(scope="module")
def history(synthetic_dir) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    with open(synthetic_dir / "interactions.csv") as fh:
        for row in csv.DictReader(fh):
            seen.setdefault(row["user_id"], set()).add(row["item_id"])
    return seen


def test_known_user_gets_k_distinct_unseen_items(stub, history):
    for user in ("u0", "u1", "u7"):
        resp = stub.Recommend(gateway_pb2.RecommendRequest(user_id=user, k=10, debug=True),
                              timeout=5)
        ids = [i.item_id for i in resp.items]
        assert len(ids) == 10 and len(set(ids)) == 10
        assert not set(ids) & history[user]
        assert not resp.degraded
        assert resp.segment == common_pb2.USER_SEGMENT_ESTABLISHED
        assert resp.version
        assert all(i.title and i.sources and i.ranking_rank == n + 1
                   for n, i in enumerate(resp.items))
        assert {"total", "retrieval", "ranking", "ranking.model"} <= set(resp.timings_ms)


def test_explain_explains_each_ranked_item(stub, history):
    """The ranker's top features and the user's item it resembles, on the real stack; a
    request without explain is not explained (its ranking skipped the second pass)."""
    resp = stub.Recommend(gateway_pb2.RecommendRequest(user_id="u0", k=10, explain=True),
                          timeout=5)
    assert not resp.degraded and len(resp.items) == 10
    for item in resp.items:
        assert 1 <= len(item.contributions) <= 3
        assert all(c.feature and c.description and c.contribution for c in item.contributions)
        sizes = [abs(c.contribution) for c in item.contributions]
        assert sizes == sorted(sizes, reverse=True)
        assert item.because_of_item_id in history["u0"]
    quiet = stub.Recommend(gateway_pb2.RecommendRequest(user_id="u0", k=10, debug=True),
                           timeout=5)
    assert not any(i.contributions or i.because_of_item_id for i in quiet.items)


def test_recommendations_follow_the_users_taste(stub):
    """Synthetic user u is built to prefer genre u % 6; most picks should be of that genre."""
    from tests.conftest import GENRES

    for user in range(6):
        resp = stub.Recommend(gateway_pb2.RecommendRequest(user_id=f"u{user}", k=10), timeout=5)
        fav = GENRES[user % len(GENRES)]
        share = sum(fav in i.categories for i in resp.items) / len(resp.items)
        assert share >= 0.5, (user, [i.categories for i in resp.items])


def test_brand_new_user_is_served(stub):
    resp = stub.Recommend(gateway_pb2.RecommendRequest(user_id="nobody-ever", k=10), timeout=5)
    assert len({i.item_id for i in resp.items}) == 10
    assert resp.segment == common_pb2.USER_SEGMENT_NEW
    assert all(s.generator == "trending" for i in resp.items for s in i.sources)


def test_onboarding_picks_steer_a_new_user(stub):
    from tests.conftest import GENRES

    picks = ["i3", "i9", "i15"]  # genre GENRES[3]
    resp = stub.Recommend(gateway_pb2.RecommendRequest(
        user_id="fresh", k=10, recent_item_ids=picks), timeout=5)
    assert resp.segment == common_pb2.USER_SEGMENT_ONBOARDING
    assert not {i.item_id for i in resp.items} & set(picks)
    share = sum(GENRES[3] in i.categories for i in resp.items) / len(resp.items)
    assert share >= 0.5


def test_an_anonymous_session_gets_what_follows_its_items_in_order(stack, trained):
    """An unknown user with ``recent_item_ids`` (oldest first) gets the sequence generator's
    candidates for that order, exactly as the published transitions say."""
    from shortlist.common.artifacts import resolve
    from shortlist.retrieval.bundle import RetrievalModels, banned_mask
    from shortlist.v1 import retrieval_pb2, retrieval_pb2_grpc

    models = RetrievalModels.load(resolve(trained))
    seq = models.generators["sequence"]
    k = int(seq.config.candidates * seq.config.light_factor)
    vocab = models.catalog.vocab

    def expected(picks):
        state = models.user_state(-1, vocab.indices(picks))
        ids, _ = seq.propose(state, k, banned_mask(len(models.catalog), state.items))
        return vocab.ids(ids)

    def served(picks):
        with grpc.insecure_channel(stack.address("retrieval")) as channel:
            resp = retrieval_pb2_grpc.RetrievalStub(channel).Retrieve(
                retrieval_pb2.RetrieveRequest(user_id="anon-session", recent_item_ids=picks),
                timeout=5)
        c = resp.candidates
        col, width = list(c.generators).index("sequence"), len(c.generators)
        ranks = {c.item_ids[r]: c.generator_ranks[r * width + col]
                 for r in range(len(c.item_ids)) if c.generator_ranks[r * width + col]}
        assert resp.user.segment == common_pb2.USER_SEGMENT_ONBOARDING
        return sorted(ranks, key=ranks.get)

    session = ["i3", "i10", "i17", "i4"]
    forward, backward = served(session), served(session[::-1])
    assert forward and forward == expected(session)
    assert backward == expected(session[::-1])
    assert forward != backward  # the order of the session, not only its items, matters


def test_a_new_user_who_says_who_they_are_gets_what_users_like_them_liked(stub, stack):
    """The synthetic users' ``club`` attribute is their preferred genre (planted): a brand-new
    user who gives it is served that genre, from the demographic generator, before any event;
    without it, trending as before. Through the CLI too."""
    from tests.conftest import GENRES

    for genre in (GENRES[1], GENRES[4]):
        resp = stub.Recommend(gateway_pb2.RecommendRequest(
            user_id="newcomer", k=10, debug=True, user_attributes={"club": genre}), timeout=5)
        assert resp.segment == common_pb2.USER_SEGMENT_NEW
        plain = stub.Recommend(gateway_pb2.RecommendRequest(user_id="newcomer", k=10,
                                                            debug=True), timeout=5)
        assert all(s.generator == "trending" for i in plain.items for s in i.sources)
        share, before = (sum(genre in i.categories for i in r.items) / len(r.items)
                         for r in (resp, plain))
        # the ranker mixes in what is trending, but the list now leans to the genre
        assert share >= 0.5 and share >= before + 0.3, (genre, share, before)
        assert any(s.generator == "demographic" for i in resp.items for s in i.sources)
    # unknown names and values are ignored, not errors: the caller's data may be ahead
    odd = stub.Recommend(gateway_pb2.RecommendRequest(
        user_id="newcomer", k=10, debug=True, user_attributes={"shoe": "42", "club": "Opera"}),
        timeout=5)
    assert [i.item_id for i in odd.items] == [i.item_id for i in plain.items]
    assert cli.main(["--target", stack.address("gateway"), "recommend", "--user", "newcomer",
                     "--attr", f"club={GENRES[1]}", "--json"]) == 0


def test_filters(stub):
    base = stub.Recommend(gateway_pb2.RecommendRequest(user_id="u0", k=10), timeout=5)
    banned = [base.items[0].item_id, base.items[1].item_id]
    resp = stub.Recommend(gateway_pb2.RecommendRequest(
        user_id="u0", k=10, filters=common_pb2.Filters(
            exclude_item_ids=banned, exclude_categories=["Horror"])), timeout=5)
    assert not {i.item_id for i in resp.items} & set(banned)
    assert all("Horror" not in i.categories for i in resp.items)
    only = stub.Recommend(gateway_pb2.RecommendRequest(
        user_id="u0", k=10, filters=common_pb2.Filters(include_categories=["SciFi"])),
        timeout=5)
    assert only.items and all(i.categories == ["SciFi"] for i in only.items)


R = common_pb2.Rule


def recommend(stub, user: str, *rules: common_pb2.Rule, k: int = 10, debug: bool = True):
    return stub.Recommend(gateway_pb2.RecommendRequest(user_id=user, k=k, debug=debug,
                                                       rules=rules), timeout=5)


def test_a_pin_puts_its_item_first_and_says_so(stub):
    plain = recommend(stub, "u0")
    assert not any(i.rules for i in plain.items)
    unpinned = [i.item_id for i in plain.items]
    # an item of another genre that u0's top 10 lacks (u0 prefers GENRES[0]: i0, i6, ...)
    pinned = next(f"i{n}" for n in range(1, 240, 6) if f"i{n}" not in unpinned)
    resp = recommend(stub, "u0", R(action=R.PIN, item_id=pinned, position=1))
    assert not resp.degraded
    first = resp.items[0]
    assert first.item_id == pinned and first.title and first.ranking_rank == 1
    assert list(first.rules) == [f"pin item={pinned} at 1"]
    assert [i.item_id for i in resp.items[1:]] == unpinned[:9]  # the rest moves down one
    assert not any(i.rules for i in resp.items[1:])
    # without debug the item is still first, without the note
    quiet = recommend(stub, "u0", R(action=R.PIN, item_id=pinned, position=1), debug=False)
    assert quiet.items[0].item_id == pinned and not quiet.items[0].rules


def test_a_category_boost_raises_its_share(stub):
    from tests.conftest import GENRES

    other = GENRES[2]  # u0 prefers GENRES[0]
    def share(resp):
        return sum(other in i.categories for i in resp.items) / len(resp.items)

    plain = recommend(stub, "u0")
    boosted = recommend(stub, "u0", R(action=R.BOOST, category=other, factor=1000))
    assert len(boosted.items) == 10
    assert share(boosted) > share(plain) and share(boosted) >= 0.5, (share(plain),
                                                                    share(boosted))
    assert all(list(i.rules) == [f"boost category={other} x1000"]
               for i in boosted.items if other in i.categories)
    # a burial of the user's own genre works the other way
    buried = recommend(stub, "u0", R(action=R.BURY, category=GENRES[0], factor=1000))
    assert (sum(GENRES[0] in i.categories for i in buried.items)
            < sum(GENRES[0] in i.categories for i in plain.items))


def test_a_category_exclusion_removes_all_of_it(stub):
    from tests.conftest import GENRES

    fav = GENRES[0]  # u0's genre: most of the plain list
    assert any(fav in i.categories for i in recommend(stub, "u0").items)
    resp = recommend(stub, "u0", R(action=R.EXCLUDE, category=fav))
    assert len(resp.items) == 10 and not resp.degraded
    assert all(fav not in i.categories for i in resp.items)


@pytest.mark.parametrize(("rule", "why"), [
    (R(action=R.BOOST, category="Comedy", factor=0.5), "factor must be greater than 1"),
    (R(action=R.PIN, item_id="i5"), "position must be 1 to 1000"),
    (R(action=R.EXCLUDE, item_id="i5", category="Comedy"), "exactly one of item_id and category"),
    (R(action=99, item_id="i5"), "action must be one of"),
    (R(item_id="i5"), "action must be one of"),
], ids=["boost below 1", "pin without position", "two targets", "unknown action",
        "no action"])
def test_a_malformed_rule_is_invalid_argument(stub, rule, why):
    with pytest.raises(grpc.RpcError) as err:
        recommend(stub, "u0", R(action=R.EXCLUDE, item_id="i1"), rule)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("rule 2 ") and why in err.value.details()


def test_similar_items(stub):
    from shortlist.v1 import retrieval_pb2

    resp = stub.SimilarItems(retrieval_pb2.SimilarItemsRequest(item_id="i0", k=5), timeout=5)
    assert len(resp.items) == 5 and "i0" not in {s.item.item_id for s in resp.items}
    with pytest.raises(grpc.RpcError) as err:
        stub.SimilarItems(retrieval_pb2.SimilarItemsRequest(item_id="nope", k=5), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("request_kwargs", [
    {"user_id": "", "k": 10},
    {"user_id": "u0", "k": -1},
    {"user_id": "u0", "k": 100000},
    {"user_id": "x" * 10000, "k": 10},
    {"user_id": "u0", "user_attributes": {"club": "a\x00b"}},
    {"user_id": "u0", "user_attributes": {"": "x"}},
    {"user_id": "u0", "user_attributes": {f"a{n}": "x" for n in range(2000)}},
    {"user_id": "u0", "user_attributes": {"club": "x" * 10000}},
])
def test_bad_input_is_invalid_argument(stub, request_kwargs):
    with pytest.raises(grpc.RpcError) as err:
        stub.Recommend(gateway_pb2.RecommendRequest(**request_kwargs), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_health_and_reflection_on_every_process(stack):
    expected = {"gateway": "shortlist.v1.Gateway", "retrieval": "shortlist.v1.Retrieval",
                "ranking": "shortlist.v1.Ranking"}
    for name, service in expected.items():
        with grpc.insecure_channel(stack.address(name)) as ch:
            status = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
            reply = next(reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
            names = {s.name for s in reply.list_services_response.service}
            assert service in names and "grpc.health.v1.Health" in names


def test_cli_json(stack, capsys, history):
    assert cli.main(["--target", stack.address("gateway"), "recommend", "--user", "u2",
                     "-k", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["user_id"] == "u2" and len(out["items"]) == 10
    assert {"items", "degraded", "timings_ms", "version"} <= set(out)
    assert all(i["title"] and i["item_id"] not in history["u2"] for i in out["items"])
    assert cli.main(["--target", stack.address("gateway"), "recommend", "--user",
                     "no-such-user", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 10
    assert cli.main(["health", "--target", stack.address("retrieval")]) == 0


def test_cli_console_script_table(stack):
    out = subprocess.run(
        [sys.executable, "-m", "shortlist.clients.cli", "--target", stack.address("gateway"),
         "recommend", "--user", "u3", "-k", "5"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "title" in out.stdout and "timings" in out.stdout
