"""What every tuning measurement shares: latency statistics, verdicts, the keep-or-switch rule and
the text table.

A measurement module compares the alternatives of one serving choice and returns ``result(...)``:
a plain dict (so the runner writes it to JSON and tests read it) holding each case's statistics
per alternative, a verdict per alternative and one recommendation. The rule behind the
recommendation is deliberately conservative: the current setting is the simpler or deployed one,
so a switch must pay for itself beyond noise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# Differences smaller than this share of the faster alternative are reported as ties: with a
# model fit competing for the same two cores, run-to-run noise is of that order.
TOLERANCE = 0.10
# p99 of a few seconds of load is noisier than a median over thousands of calls.
SERVER_TOLERANCE = 0.20
# Error shares closer than this are treated as equal (a few calls caught by a load burst).
ERROR_MARGIN = 0.005

Stats = dict[str, Any]


def summarize(samples_ms: Sequence[float]) -> Stats:
    """p50/p99/mean of latency samples in ms (only ``n`` when there are none)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if len(a) == 0:
        return {"n": 0}
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "n": int(len(a))}


def rotated(names: Sequence[str], r: int) -> list[str]:
    """``names`` started at position ``r``: alternatives take turns at going first, so a burst
    of background load hurts each alike rather than whichever ran during it."""
    k = r % len(names)
    return [*names[k:], *names[:k]]


def cycle(items: Sequence[Any]) -> Callable[[], Any]:
    """A zero-argument function returning the next item each call (requests vary)."""
    state = {"i": 0}

    def nxt() -> Any:
        state["i"] = (state["i"] + 1) % len(items)
        return items[state["i"]]

    return nxt


def time_calls(calls: dict[str, tuple[Callable[[], object], int]], repeats: int = 3,
               warmup: int = 3) -> dict[str, Stats]:
    """Per-call latency of each alternative, ``(fn, iterations)`` per round, rounds rotated.

    Returns pooled statistics plus ``best_round_p50_ms``: the least disturbed round's median,
    the number to trust when background load comes and goes.
    """
    samples: dict[str, list[float]] = {name: [] for name in calls}
    round_p50: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(max(1, repeats)):
        for name in rotated(list(calls), r):
            fn, iterations = calls[name]
            for _ in range(warmup):
                fn()
            got = []
            for _ in range(max(1, iterations)):
                t0 = time.perf_counter_ns()
                fn()
                got.append((time.perf_counter_ns() - t0) / 1e6)
            samples[name].extend(got)
            round_p50[name].append(float(np.median(got)))
    return {name: {**summarize(samples[name]), "best_round_p50_ms": min(round_p50[name]),
                   "rounds": len(round_p50[name])} for name in calls}


def _pct(value: float, base: float) -> float:
    return (value / base - 1.0) * 100.0 if base > 0 else float("inf")


def timing_verdicts(alts: dict[str, Stats], tolerance: float = TOLERANCE) -> dict[str, str]:
    """Each alternative against the fastest median, with its mean beside it.

    The mean carries the tail (a thread descheduled for 10 ms moves it, not the median), so a
    lower median with a higher mean shows up as such instead of as a plain win.
    """
    timed = {k: v for k, v in alts.items() if "p50_ms" in v}
    if not timed:
        return {k: "-" for k in alts}
    best = min(timed, key=lambda k: timed[k]["p50_ms"])
    ref = timed[best]
    out = {}
    for name, s in alts.items():
        if name not in timed:
            out[name] = "no samples"
        elif name == best:
            out[name] = "fastest p50"
        else:
            pct = _pct(s["p50_ms"], ref["p50_ms"])
            mean = f"{_pct(s['mean_ms'], ref['mean_ms']):+.0f}% mean"
            out[name] = (f"tie (+{pct:.0f}% p50, {mean})" if pct < tolerance * 100
                         else f"+{pct:.0f}% p50, {mean}")
    return out


def error_count(s: Stats) -> int:
    return int(sum(s.get("errors", {}).values()))


def _error_share(s: Stats) -> float:
    return error_count(s) / max(1, s.get("sent", 1))


def _fewer_errors(a: Stats, b: Stats) -> bool:
    return _error_share(a) < _error_share(b) - ERROR_MARGIN


def server_verdicts(alts: dict[str, Stats],
                    tolerance: float = SERVER_TOLERANCE) -> dict[str, str]:
    """Fewest errors first (beyond a margin), then lowest p99; each row also shows its
    errors and throughput."""
    least = min(_error_share(s) for s in alts.values())
    level = [k for k, s in alts.items() if _error_share(s) <= least + ERROR_MARGIN]
    best = min(level, key=lambda k: alts[k].get("p99_ms", float("inf")))
    ref = alts[best]
    out = {}
    for name, s in alts.items():
        tail = f"{error_count(s)} err, {s.get('throughput_rps', 0.0):.0f} rps"
        if "best_round_p99_ms" in s:  # the least disturbed of several rounds
            tail += f"; best round {s['best_round_errors']} err, p99 {s['best_round_p99_ms']:.1f}"
        if name == best:
            out[name] = f"best; {tail}"
        elif name not in level:
            out[name] = f"more errors; {tail}"
        elif "p99_ms" not in s:
            out[name] = f"no answers; {tail}"
        else:
            pct = _pct(s["p99_ms"], ref["p99_ms"])
            word = f"tie (+{pct:.0f}% p99)" if pct < tolerance * 100 else f"+{pct:.0f}% p99"
            out[name] = f"{word}; {tail}"
    return out


def _beats(a: Stats, b: Stats, server: bool, tolerance: float) -> bool:
    """Whether ``a`` is clearly better than ``b`` (beyond noise).

    Servers: a smaller share of errors, or as small and a lower p99. Micro-benchmarks: a
    lower median without a higher mean, so a setting that wins the typical call but loses
    the tail (threads waiting for a busy core) does not count as better.
    """
    if server:
        if _fewer_errors(a, b) or _fewer_errors(b, a):
            return _fewer_errors(a, b)
        if "p99_ms" not in a or "p99_ms" not in b:
            return False
        return a["p99_ms"] < b["p99_ms"] * (1.0 - tolerance)
    if "p50_ms" not in a or "p50_ms" not in b:
        return False
    return (a["p50_ms"] < b["p50_ms"] * (1.0 - tolerance)
            and a["mean_ms"] <= b["mean_ms"] * (1.0 + tolerance))


def _consistently_beats(a: Stats, b: Stats, server: bool, tolerance: float) -> bool:
    """``_beats`` over the pooled runs and, for servers measured in several rounds, in every
    round: a p99 or an error count from one disturbed round must not decide a switch."""
    if not _beats(a, b, server, tolerance):
        return False
    ra, rb = a.get("per_round", []), b.get("per_round", [])
    if server and ra and len(ra) == len(rb):
        return all(_beats(x, y, server, tolerance) for x, y in zip(ra, rb, strict=True))
    return True


def recommend(result: dict, server: bool = False) -> str:
    """Keep the current setting unless an alternative wins and loses no case.

    The current setting is the simpler or already-deployed one, so a switch must pay for
    itself beyond noise: in at least one case for micro-benchmarks; for the servers, whose
    p99 over a few seconds is itself noisy, in most rates and in every round of each.
    """
    tol = SERVER_TOLERANCE if server else TOLERANCE
    current = result["current"]
    timed = {case: c["alternatives"] for case, c in result["cases"].items()
             if current in c["alternatives"] and "n" in c["alternatives"][current]}
    others = sorted({a for alts in timed.values() for a in alts} - {current})
    tally = {}
    for other in others:
        cases = [alts for alts in timed.values() if other in alts]
        wins = sum(_consistently_beats(alts[other], alts[current], server, tol)
                   for alts in cases)
        losses = sum(_consistently_beats(alts[current], alts[other], server, tol)
                     for alts in cases)
        tally[other] = (wins, losses, len(cases))
    needed = {o: (n // 2 + 1 if server else 1) for o, (_, _, n) in tally.items()}
    switch = [o for o, (w, lo, _) in tally.items() if w >= needed[o] and lo == 0]
    if switch:
        best = max(switch, key=lambda o: tally[o][0])
        w, _, n = tally[best]
        return f"switch to {best}: better than {current} in {w} of {n} cases, worse in none"
    detail = "; ".join(f"{o} worse in {lo}, better in {w}, tied in {n - w - lo} of {n}"
                       for o, (w, lo, n) in tally.items())
    return f"keep {current} ({detail})"


def result(choice: str, question: str, current: str, cases: dict[str, dict[str, Stats]],
           server: bool = False, notes: str = "", **extra: Any) -> dict:
    """One measurement's report entry: cases, verdicts and the recommendation."""
    verdict = server_verdicts if server else timing_verdicts
    out = {"choice": choice, "question": question, "current": current, "notes": notes,
           "cases": {name: {"alternatives": alts, "verdicts": verdict(alts)}
                     for name, alts in cases.items()}, **extra}
    out["recommendation"] = recommend(out, server)
    return out


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else "-"


def table(results: dict[str, dict]) -> str:
    """The report as text: one row per alternative per case, then one line per choice."""
    head = ("choice", "alternative", "p50 ms", "p99 ms", "mean", "verdict")
    rows = []
    for name, res in results.items():
        for case, c in res["cases"].items():
            for alt, s in c["alternatives"].items():
                verdict = c["verdicts"][alt]
                if "mb" in s:
                    verdict = f"{s['mb']:.1f} MB"
                rows.append((f"{name}: {case}", alt, _fmt(s.get("p50_ms")),
                             _fmt(s.get("p99_ms")), _fmt(s.get("mean_ms")), verdict))
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = [" | ".join(str(v).ljust(widths[i]) for i, v in enumerate(r)) for r in [head, *rows]]
    lines.insert(1, "-+-".join("-" * wd for wd in widths))
    lines.append("")
    lines += [f"{name}: {res['recommendation']}" for name, res in results.items()]
    return "\n".join(lines)
