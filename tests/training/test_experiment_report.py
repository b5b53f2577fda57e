"""Experiment statistics on logs with known answers, and `shortlist-train experiment-report`
end to end on a file written by the gateway's writer."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from scipy import stats

from shortlist.common.impressions import (
    Impression,
    ImpressionLog,
    LogContents,
    Outcome,
    ShadowScore,
    read_log,
)
from shortlist.training.__main__ import main
from shortlist.training.experiment_report import (
    NEGATIVE_EVENTS,
    attribute,
    experiment_report,
    impression_metrics,
)

H = 3600.0
L2 = 1 / math.log2(3)  # the gain of position 2


def imp(rid: str, user: str, variant: str, items: str, ts: float, teams: str = "",
        experiment: str = "exp") -> Impression:
    return Impression(rid, user, experiment, variant, "v1", "ranker", False,
                      tuple(items.split()), tuple(teams.split()), ts)


def out(user: str, item: str, ts: float, event: str = "click", follows: str = "",
        weight: float = 1.0) -> Outcome:
    return Outcome(user, item, event, weight, ts, follows)


def small_log() -> LogContents:
    """Two variants of two users each, every number worked out by hand (k = 3)."""
    return LogContents(
        impressions=[
            imp("r1", "u1", "A", "a b c", 100), imp("r2", "u1", "A", "d e f", 200),
            imp("r3", "u2", "A", "a b c", 100),
            imp("r4", "u3", "B", "a b c", 100),
            imp("r5", "u4", "B", "a b c d", 100),
        ],
        outcomes=[
            out("u1", "b", 110),  # r1: hit, NDCG 1/log2(3)
            out("u2", "a", 150), out("u2", "z", 160),  # r3: hit, DCG 1 over IDCG 1 + 1/log2(3)
            out("u3", "a", 50),  # before u3's first impression: unattributed
            out("u3", "a", 100 + H + 1),  # past the window: unattributed
            out("u4", "d", 120),  # r5, but at position 4 > k: no hit, NDCG 0
            out("u4", "a", 130, event="Dislike"),  # negative: attributed, not credited
        ])


def test_known_answers_per_user():
    rep = experiment_report(small_log(), k=3, window_s=H)
    a, b = rep.variant("A"), rep.variant("B")
    assert rep.control == "A" and a.is_control  # tie on users: A has more impressions
    assert (a.n_users, a.n_impressions, a.hits) == (2, 3, 2)
    assert (b.n_users, b.n_impressions, b.hits) == (2, 2, 0)
    # u1: hits (1, 0) -> 0.5, u2: 1 -> mean 0.75; NDCG u1 (L2 + 0) / 2, u2 1 / (1 + L2)
    assert a.hit_rate.mean == pytest.approx(0.75)
    ndcg_users = [L2 / 2, 1 / (1 + L2)]
    assert a.ndcg.mean == pytest.approx(np.mean(ndcg_users))
    assert (b.hit_rate.mean, b.ndcg.mean) == (0.0, 0.0)
    low, high = stats.t.interval(0.95, 1, loc=0.75, scale=stats.sem([0.5, 1.0]))
    assert (a.hit_rate.ci_low, a.hit_rate.ci_high) == pytest.approx((low, high))
    # Welch: t = -0.75 / sqrt(var([0.5, 1]) / 2) = -3 with 1 degree of freedom
    assert b.hit_rate.delta == pytest.approx(-0.75) and b.hit_rate.lift == pytest.approx(-1)
    assert b.hit_rate.p_value == pytest.approx(2 * stats.t.sf(3, 1))
    assert not b.hit_rate.significant
    att = rep.attribution
    assert (att.outcomes, att.by_request_id, att.by_time, att.unattributed, att.negative) == (
        7, 0, 5, 2, 1)


def test_the_user_is_the_unit_not_the_impression():
    heavy = [imp(f"h{j}", "heavy", "B", "a b", j * 10) for j in range(50)]
    light = [imp(f"l{u}", f"u{u}", "B", "a b", 0) for u in range(3)]
    clicks = [out("heavy", "a", j * 10 + 1) for j in range(50)]
    rep = experiment_report(LogContents(heavy + light, clicks), k=2)
    b = rep.variant("B")
    assert (b.n_users, b.n_impressions, b.hits) == (4, 53, 50)
    assert b.hit_rate.mean == pytest.approx(0.25)  # not 50 / 53


def test_metrics_of_one_list():
    assert impression_metrics(["a", "b", "c"], {"c"}, 3) == (1.0, pytest.approx(0.5))
    assert impression_metrics(["a", "b", "c"], {"c"}, 2) == (0.0, 0.0)
    # two credited, one shown at the top: DCG 1, IDCG 1 + 1/log2(3)
    assert impression_metrics(["a", "b"], {"a", "x"}, 10)[1] == pytest.approx(1 / (1 + L2))
    assert impression_metrics(["a", "b"], set(), 10) == (0.0, 0.0)


def test_a_named_request_beats_the_time_guess():
    imps = [imp("r1", "u1", "A", "a b", 100), imp("r2", "u1", "A", "c d", 200),
            imp("other", "u2", "A", "b", 150)]
    named = experiment_report(LogContents(imps, [out("u1", "b", 250, follows="r1")]), k=2)
    guessed = experiment_report(LogContents(imps, [out("u1", "b", 250)]), k=2)
    credited, att = attribute(LogContents(imps, [out("u1", "b", 250, follows="r1")]), H)
    assert credited == {"r1": {"b"}} and att.by_request_id == 1
    assert named.variant("A").hits == 1
    assert guessed.variant("A").hits == 0  # credited to r2, which did not show b
    # a request id of another user's impression is not believed: the time guess applies
    credited, att = attribute(LogContents(imps, [out("u1", "b", 250, follows="other")]), H)
    assert credited == {"r2": {"b"}} and (att.by_request_id, att.by_time) == (0, 1)


def test_window_is_respected():
    imps = [imp("r1", "u1", "A", "a", 1000)]
    for delay, credited in ((0, True), (H, True), (H + 1, False)):
        got, att = attribute(LogContents(imps, [out("u1", "a", 1000 + delay)]), H)
        assert bool(got) is credited, delay
        assert att.unattributed == (not credited)
    got, _ = attribute(LogContents(imps, [out("u1", "a", 999)]), H)  # before: never
    assert not got


def test_negative_events_are_not_credited():
    assert set(NEGATIVE_EVENTS) == {"dislike", "skip"}
    imps = [imp("r1", "u1", "A", "a b", 0)]
    for event, weight, positive in (("skip", 1.0, False), (" DISLIKE ", 1.0, False),
                                    ("", -1.0, False), ("purchase", 4.0, True),
                                    ("", 1.0, True)):
        rep = experiment_report(LogContents(imps, [out("u1", "a", 5, event, weight=weight)]))
        assert rep.variant("A").hits == int(positive), event
        assert rep.attribution.negative == int(not positive)
    custom = experiment_report(LogContents(imps, [out("u1", "a", 5, "view")]),
                               negative_events=("view",))
    assert custom.variant("A").hits == 0


def simulate(seed: int, click_prob: dict[str, float], n_users: int = 400,
             experiment: str = "exp", t0: float = 0.0) -> LogContents:
    """Users spread over the variants; each impression gets a click (at a position drawn
    from a decaying distribution) with its variant's probability; a few clicks miss."""
    rng = np.random.default_rng(seed)
    names = list(click_prob)
    imps, outs = [], []
    for u in range(n_users):
        variant = names[u % len(names)]
        for j in range(int(rng.integers(1, 4))):
            ts = t0 + j * 1000 + u
            items = [f"i{x}" for x in rng.choice(500, size=10, replace=False)]
            imps.append(Impression(f"{experiment}-{u}-{j}", f"u{u}", experiment, variant, "v1",
                                   "ranker", False, tuple(items), (), ts))
            if rng.random() < click_prob[variant]:
                pos = min(int(rng.geometric(0.3)) - 1, 9)
                outs.append(out(f"u{u}", items[pos], ts + 5))
            if rng.random() < 0.1:
                outs.append(out(f"u{u}", "elsewhere", ts + 6))
    return LogContents(imps, outs)


def test_a_planted_difference_is_significant():
    rep = experiment_report(simulate(1, {"control": 0.5, "popular": 0.25}), control="control")
    pop = rep.variant("popular")
    assert pop.hit_rate.delta == pytest.approx(-0.25, abs=0.07)
    assert pop.hit_rate.significant and pop.ndcg.significant
    assert pop.hit_rate.p_value < 1e-6
    verdict = rep.verdicts()[0]
    assert verdict.startswith("popular vs control: hit rate -0.")
    assert verdict.count(": significant") == 2


def test_the_same_click_model_is_not_flagged():
    for seed in (2, 3, 4):
        rep = experiment_report(simulate(seed, {"a": 0.4, "b": 0.4, "c": 0.4}))
        assert rep.n_comparisons == 2 and rep.threshold == pytest.approx(0.025)
        for v in rep.variants:
            assert not v.hit_rate.significant and not v.ndcg.significant, (seed, v)
        assert "not significant" in rep.verdicts()[0]


def interleaved(seed: int, n: int, clicked_arm: str | None) -> LogContents:
    """n impressions of the INTERLEAVE variant 'il' (arms 'new' and 'old', team draft); each
    gets one click, on an item of ``clicked_arm`` or (None) of either arm at random."""
    rng = np.random.default_rng(seed)
    imps, outs = [], []
    for u in range(n):
        teams = ["new", "old"] if rng.random() < 0.5 else ["old", "new"]
        teams = (teams * 5)[:10]
        items = [f"u{u}i{x}" for x in range(10)]
        imps.append(Impression(f"r{u}", f"u{u}", "exp", "il", "v1", "interleave", False,
                               tuple(items), tuple(teams), float(u)))
        arm = clicked_arm or str(rng.choice(["new", "old"]))
        pos = next(p for p, t in enumerate(teams) if t == arm) + 2 * int(rng.integers(0, 3))
        outs.append(out(f"u{u}", items[pos], u + 0.5))
    return LogContents(imps, outs)


def test_interleaving_an_arm_with_all_the_clicks_wins():
    rep = experiment_report(interleaved(5, 60, "new"))
    assert rep.variants == []  # interleaved impressions stay out of the A/B means
    (il,) = rep.interleaving
    assert il.arms == ("new", "old") and il.wins == (60, 0) and il.ties == 0
    assert il.preference == 1.0 and il.significant and il.winner == "new"
    assert il.p_value == pytest.approx(2 * 0.5 ** 60)
    assert "new preferred, significant" in rep.verdicts()[0]


def test_interleaving_without_preference_is_not_significant():
    (il,) = experiment_report(interleaved(6, 200, None)).interleaving
    assert sum(il.wins) == 200 and not il.significant and il.winner is None
    assert abs(il.preference) < 0.2


def test_interleaving_ties_and_impressions_without_clicks():
    imps = [imp("w", "u1", "il", "a b", 0, teams="x y"), imp("t", "u2", "il", "a b", 0,
                                                              teams="x y"),
            imp("n", "u3", "il", "a b", 0, teams="y x")]
    outs = [out("u1", "a", 1), out("u2", "a", 1), out("u2", "b", 2)]
    (il,) = experiment_report(LogContents(imps, outs)).interleaving
    assert (il.wins, il.ties, il.no_clicks, il.n_users) == ((1, 0), 1, 1, 3)
    assert il.preference == pytest.approx(0.5) and il.p_value == pytest.approx(1.0)


def test_shadow_summary():
    shadows = [ShadowScore(f"r{i}", "exp", "A", "s", o, c, 0.0)
               for i, (o, c) in enumerate([(0.2, 0.1), (0.4, math.nan), (0.6, 0.3),
                                           (0.8, 0.5), (1.0, 0.7)])]
    rep = experiment_report(LogContents([], [], shadows))
    (s,) = rep.shadows
    assert (s.shadow_variant, s.count, s.correlation_defined) == ("s", 5, 4)
    assert s.overlap_mean == pytest.approx(0.6) and s.overlap_p50 == pytest.approx(0.6)
    assert s.overlap_p10 == pytest.approx(0.28)
    assert s.correlation_mean == pytest.approx(0.4) and s.correlation_p50 == pytest.approx(0.4)


def test_report_as_json_and_markdown():
    rep = experiment_report(small_log(), k=3, window_s=H)
    data = json.loads(json.dumps(rep.to_json(), allow_nan=False))
    assert data["control"] == "A" and data["variants"][1]["variant"] == "B"
    assert data["variants"][0]["hit_rate"]["p_value"] is None  # the control: no test
    assert data["attribution"]["unattributed"] == 2
    text = rep.to_markdown()
    assert "## hit rate@3" in text and "## NDCG@3" in text
    assert "| A (control) | 2 | 3 | 2 | 0.7500 |" in text
    assert "| B | 2 | 2 | 0 | 0.0000 |" in text and "-0.7500" in text
    assert "- B vs A: hit rate -0.750 (-100%), p=0.2048: not significant" in text


def test_control_must_be_a_variant():
    with pytest.raises(ValueError, match="control variant 'C'.*A, B"):
        experiment_report(small_log(), control="C")


# -- the command ------------------------------------------------------------------------------


def write_log(path, now: float) -> LogContents:
    """A real file: an older experiment, then 'exp2' with a planted difference, a shadow."""
    # 301 users: 151 for the control, which makes it the default control (the most users)
    planted = simulate(7, {"control": 0.5, "popular": 0.2}, n_users=301, experiment="exp2",
                       t0=now - 20 * H)
    older = simulate(8, {"x": 0.5}, n_users=20, experiment="exp1", t0=now - 40 * H)
    with ImpressionLog(path) as log:
        for rec in [*older.impressions, *older.outcomes, *planted.impressions,
                    *planted.outcomes]:
            assert log.record(rec)
        log.record(ShadowScore("exp2-0-0", "exp2", "control", "shadowy", 0.8, 0.5, now - 20 * H))
    return planted


def test_cli_end_to_end(tmp_path, capsys):
    path, report_json = tmp_path / "gw1.db", tmp_path / "out" / "report.json"
    now = time.time()
    write_log(path, now)
    assert main(["experiment-report", "--impressions", str(path), "--json",
                 str(report_json)]) == 0
    printed = capsys.readouterr().out
    assert "# Experiment report: `exp2`" in printed  # the most recent experiment
    assert "## hit rate@10" in printed and "| control (control) | 151 |" in printed
    verdict = next(line for line in printed.splitlines() if line.startswith("popular vs"))
    assert verdict.startswith("popular vs control: hit rate -0.")
    assert verdict.endswith(": significant")
    data = json.loads(report_json.read_text())
    direct = experiment_report(read_log([path], experiment="exp2"))
    assert data["control"] == "control" and data["experiments"] == ["exp2"]
    popular = next(v for v in data["variants"] if v["variant"] == "popular")
    assert popular["n_users"] == 150 and popular["hit_rate"]["significant"]
    assert popular["hit_rate"]["mean"] == pytest.approx(direct.variant("popular").hit_rate.mean)
    assert data["shadows"][0]["count"] == 1

    assert main(["experiment-report", "--impressions", str(path), "--experiment", "exp1",
                 "--k", "5", "--window", "1"]) == 0
    printed = capsys.readouterr().out
    assert "`exp1`" in printed and "## hit rate@5" in printed and "x (control)" in printed


def test_cli_time_range(tmp_path, capsys):
    path = tmp_path / "gw1.db"
    now = time.time()
    write_log(path, now)
    # every exp2 impression is 18-20 hours old: an --until before them leaves none
    until = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 30 * H))
    assert main(["experiment-report", "--impressions", str(path), "--experiment", "exp2",
                 "--until", until]) == 2
    assert "no impressions of experiment 'exp2'" in capsys.readouterr().err
    # from t0 + 1000 s on: only the users' second and third impressions
    assert main(["experiment-report", "--impressions", str(path), "--since",
                 str(now - 20 * H + 1000)]) == 0
    assert "| control (control) | 151 |" not in capsys.readouterr().out  # fewer users


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err.strip()


def test_cli_errors(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "missing.db"
    assert main(["experiment-report", "--impressions", str(missing)]) == 2
    assert one_line_error(capsys) == f"error: {missing}: no such impressions log"
    path = tmp_path / "gw1.db"
    ImpressionLog(path).close()
    assert main(["experiment-report", "--impressions", str(path)]) == 2
    assert one_line_error(capsys) == f"error: no impressions in {path}"
    write_log(path, time.time())
    assert main(["experiment-report", "--impressions", str(path), "--experiment", "nope"]) == 2
    assert one_line_error(capsys) == f"error: no impressions of experiment 'nope' in {path}"
    assert main(["experiment-report", "--impressions", str(path), "--control", "nope"]) == 2
    assert "control variant 'nope'" in one_line_error(capsys)

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    chart = tmp_path / "chart.png"
    assert main(["experiment-report", "--impressions", str(path), "--plot", str(chart)]) == 2
    assert "matplotlib" in one_line_error(capsys) and not chart.exists()


def test_cli_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path, chart = tmp_path / "gw1.db", tmp_path / "charts" / "exp.png"
    now = time.time()
    write_log(path, now)
    il = interleaved(9, 30, "new")
    with ImpressionLog(path) as log:  # an interleaving variant too, for the third panel
        for rec in il.impressions:
            log.record(Impression(rec.request_id + "il", rec.user_id, "exp2", rec.variant,
                                  rec.version, rec.configuration, False, rec.items, rec.teams,
                                  now - 10 * H))
        for rec in il.outcomes:
            log.record(Outcome(rec.user_id, rec.item_id, "click", 1.0, now - 10 * H + 1,
                               rec.follows_request_id))
    assert main(["experiment-report", "--impressions", str(path), "--plot", str(chart)]) == 0
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"chart written to {chart}" in capsys.readouterr().out


def test_clicks_on_another_experiments_lists_are_credited_to_none():
    """Two experiments in a row for one user: clicks naming the second's lists, or coming
    after it by time, never count for the first."""
    from shortlist.common.impressions import Impression, LogContents, Outcome

    first = Impression("r1", "u1", "one", "a", "v", "ranker", False, ("i1", "i2"), ts=100.0)
    second_ts = 200.0
    contents = LogContents(
        impressions=[first],
        outcomes=[Outcome("u1", "i1", "", 1.0, 150.0),  # after r1, by time: credited
                  Outcome("u1", "i2", "", 1.0, 250.0, follows_request_id="r9"),  # another's
                  Outcome("u1", "i2", "", 1.0, 260.0)],  # after the other list, by time
        other_lists={"u1": [second_ts]})
    report = experiment_report(contents, k=10)
    assert (report.attribution.by_time, report.attribution.unattributed) == (1, 2)
    [variant] = report.variants
    assert variant.hits == 1
    assert variant.ndcg.mean == 1.0  # i1 alone credited, at the top
