"""perf.report: statistics, verdicts and the keep-or-switch rule, on fixed numbers."""

from __future__ import annotations

from shortlist.perf import report


def test_summarize_and_verdicts_on_fixed_numbers():
    s = report.summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["p50_ms"] == 3.0 and s["n"] == 5
    assert s["p50_ms"] <= s["p99_ms"] <= 100.0
    assert report.summarize([]) == {"n": 0}
    alts = {"a": {"p50_ms": 1.0, "mean_ms": 1.0, "n": 1},
            "b": {"p50_ms": 1.05, "mean_ms": 1.0, "n": 1},
            "c": {"p50_ms": 2.0, "mean_ms": 3.0, "n": 1}}
    v = report.timing_verdicts(alts)
    assert v["a"] == "fastest p50" and v["b"].startswith("tie")
    assert v["c"] == "+100% p50, +200% mean"


def test_recommend_keeps_current_unless_an_alternative_wins_without_losing():
    def res(cases):
        return {"current": "cur", "cases": {k: {"alternatives": v} for k, v in cases.items()}}

    fast = {"p50_ms": 1.0, "mean_ms": 1.0, "n": 1}
    slow = {"p50_ms": 2.0, "mean_ms": 2.0, "n": 1}
    assert report.recommend(res({"x": {"cur": fast, "alt": slow}})).startswith("keep cur")
    assert report.recommend(res({"x": {"cur": slow, "alt": fast}})).startswith("switch to alt")
    mixed = {"x": {"cur": slow, "alt": fast}, "y": {"cur": fast, "alt": slow}}
    assert report.recommend(res(mixed)).startswith("keep cur")
    # a lower median bought with a heavier tail (higher mean) is not a win
    spiky = {"p50_ms": 0.5, "mean_ms": 5.0, "n": 1}
    assert report.recommend(res({"x": {"cur": fast, "alt": spiky}})).startswith("keep cur")
    # servers: errors decide before latency
    ok = {"p99_ms": 9.0, "n": 100, "sent": 100, "errors": {}}
    failing = {"p99_ms": 1.0, "n": 50, "sent": 100, "errors": {"RESOURCE_EXHAUSTED": 50}}
    assert report.recommend(res({"r": {"cur": failing, "alt": ok}}), server=True).startswith(
        "switch to alt")


def test_alternatives_take_turns_going_first():
    assert [report.rotated(["a", "b", "c"], r) for r in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    nxt = report.cycle([1, 2, 3])
    assert [nxt() for _ in range(4)] == [2, 3, 1, 2]


def test_table_has_a_row_per_alternative_and_a_line_per_choice():
    res = report.result("dtype", "width", "float32", {
        "score": {"float32": {"p50_ms": 1.0, "p99_ms": 2.0, "mean_ms": 1.1, "n": 3},
                  "float64": {"p50_ms": 1.5, "p99_ms": 2.5, "mean_ms": 1.6, "n": 3}},
        "memory": {"float32": {"mb": 25.6}, "float64": {"mb": 51.2}}})
    text = report.table({"dtype": res})
    rows = [[cell.strip() for cell in line.split("|")] for line in text.splitlines()]
    assert ["dtype: score", "float64", "1.500", "2.500", "1.600"] in [r[:5] for r in rows]
    assert ["dtype: memory", "float64", "-", "-", "-", "51.2 MB"] in rows
    assert text.splitlines()[-1] == f"dtype: {res['recommendation']}"
