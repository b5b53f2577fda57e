"""The statistics of an experiment, from the gateways' impressions logs (``common.impressions``).

Attribution. An outcome (an acknowledged interaction) is credited to the impression its caller
said it follows (``follows_request_id``) when that impression is the same user's; otherwise to
the user's latest impression at or before it, if no older than the window. Naming the request
is exact, time is a guess (a click can follow an older list, or one served by another path),
so a named request wins, and an outcome naming a list the report does not hold (another
experiment's) is credited to none. Nor is one whose latest preceding list, by time, is outside
the report: a click after the next experiment began follows that experiment's list. Negative
events (dislike, skip) are attributed but never credited as a positive: a dislike on a served
item is not a success of that list.

Metrics per impression: hit@k (any credited item in the first k) and NDCG@k with binary
relevance; the ideal DCG counts every distinct credited item (up to k), also one the list did
not hold, so a list is not rewarded for missing what the user wanted.

The unit is the user. Users, not requests, are assigned to variants, and one heavy user's
impressions are not independent draws: each user's impressions are averaged first, and the
variance and tests are over users. The confidence interval of a mean is Student's t; each
variant is compared with the control by Welch's t-test (unequal variances: variants may
differ in spread as well as mean), significant below ``alpha / m`` for ``m`` variants
compared (Bonferroni, so adding variants does not add false alarms). Hit rate and NDCG are
two views of one comparison, not separate tests, so they share ``m``.

Interleaved impressions (``teams`` set) answer another question -- which of two lists the
same users prefer, on the same requests -- and are kept out of the A/B means. Each impression
with a credited item in its first k is won by the arm that contributed more of them (or is a
tie); a two-sided binomial test on wins (ties excluded) says whether the preference is real.
Impressions without any credited item say nothing about preference and are only counted.
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy import stats

from shortlist.common.events import STANDARD, normalise
from shortlist.common.impressions import Impression, LogContents

NEGATIVE_EVENTS: tuple[str, ...] = tuple(name for name, w in STANDARD.items() if w < 0)
CONFIDENCE = 0.95
METRICS = {"hit_rate": "hit rate", "ndcg": "NDCG"}
NAN = math.nan


@dataclass(frozen=True)
class MetricResult:
    """A variant's mean of per-user values, its confidence interval, and (except for the
    control) the comparison with the control."""

    mean: float
    ci_low: float
    ci_high: float
    delta: float = NAN
    lift: float = NAN  # delta relative to the control's mean
    p_value: float = NAN
    significant: bool = False


@dataclass(frozen=True)
class VariantResult:
    variant: str
    is_control: bool
    n_users: int
    n_impressions: int
    n_degraded: int
    hits: int  # impressions with a credited item in their first k
    hit_rate: MetricResult
    ndcg: MetricResult


@dataclass(frozen=True)
class InterleavingResult:
    """Team-draft interleaving of one INTERLEAVE variant; ``preference`` > 0 favours
    ``arms[0]``."""

    variant: str
    arms: tuple[str, ...]
    wins: tuple[int, ...]  # parallel to arms
    ties: int
    no_clicks: int
    n_impressions: int
    n_users: int
    preference: float
    p_value: float
    significant: bool
    winner: str | None  # the preferred arm when significant


@dataclass(frozen=True)
class ShadowSummary:
    shadow_variant: str
    count: int
    overlap_mean: float
    overlap_p10: float
    overlap_p50: float
    correlation_mean: float  # over the scores where it is defined
    correlation_p10: float
    correlation_p50: float
    correlation_defined: int


@dataclass(frozen=True)
class Attribution:
    """Where the outcomes went: by_request_id + by_time + unattributed == outcomes."""

    outcomes: int
    by_request_id: int
    by_time: int
    unattributed: int
    negative: int  # negative events (attributed or not): never credited as positives


@dataclass
class Report:
    experiments: tuple[str, ...]
    k: int
    window_s: float
    alpha: float
    control: str | None
    n_comparisons: int
    attribution: Attribution
    variants: list[VariantResult] = field(default_factory=list)
    interleaving: list[InterleavingResult] = field(default_factory=list)
    shadows: list[ShadowSummary] = field(default_factory=list)
    users_in_several_variants: int = 0

    @property
    def threshold(self) -> float:
        """The p-value under which an A/B comparison is significant."""
        return self.alpha / max(1, self.n_comparisons)

    def variant(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.variant == name:
                return v
        raise KeyError(name)

    def verdicts(self) -> list[str]:
        """One line per comparison (A/B and interleaving), in words."""
        lines = []
        for v in self.variants:
            if v.is_control:
                continue
            parts = []
            for key, label in METRICS.items():
                m: MetricResult = getattr(v, key)
                name = label if key == "hit_rate" else f"{label}@{self.k}"
                parts.append(f"{name} {_num(m.delta, '+.3f')} ({_pct(m.lift)}), "
                             f"{_p(m.p_value)}: {_significance(m.p_value, m.significant)}")
            lines.append(f"{v.variant} vs {self.control}: " + "; ".join(parts))
        for il in self.interleaving:
            if len(il.arms) != 2:
                lines.append(f"{il.variant} (interleaving): arms {', '.join(il.arms) or 'none'}"
                             ": not two arms, no test")
                continue
            a, b = il.arms
            if il.significant:
                outcome = f"{il.winner} preferred, significant"
            elif math.isnan(il.p_value):
                outcome = "no test (no impression with a click in the first k)"
            else:
                outcome = "no significant preference"
            lines.append(f"{il.variant} ({a} vs {b}): wins {il.wins[0]}-{il.wins[1]}, "
                         f"{il.ties} ties, preference {_num(il.preference, '+.3f')}, "
                         f"{_p(il.p_value)}: {outcome}")
        return lines

    def to_json(self) -> dict:
        """Plain, JSON-serialisable data (NaN as None)."""
        data = asdict(self)
        data["threshold"] = self.threshold
        data["verdicts"] = self.verdicts()
        return _plain(data)

    def to_markdown(self, verdicts: bool = True) -> str:
        a = self.attribution
        names = ", ".join(f"`{e}`" if e else "(no experiment)" for e in self.experiments)
        n_ab = sum(v.n_impressions for v in self.variants)
        n_il = sum(i.n_impressions for i in self.interleaving)
        out = [f"# Experiment report: {names or '(no impressions)'}", "",
               f"{n_ab + n_il} impressions ({n_ab} A/B, {n_il} interleaved). "
               f"{a.outcomes} outcomes: {a.by_request_id} attributed by request id, "
               f"{a.by_time} by time (window {self.window_s / 3600:g} h), "
               f"{a.unattributed} unattributed; {a.negative} negative (never credited)."]
        if self.users_in_several_variants:
            out.append(f"{self.users_in_several_variants} user(s) saw more than one variant "
                       "(forced variants or changed shares): counted in each.")
        if self.variants:
            out += ["", f"Per-user means, {CONFIDENCE:.0%} CI (t); Welch's t-test against the "
                        f"control `{self.control}`; significant when p < {self.alpha:g}/"
                        f"{max(1, self.n_comparisons)} = {self.threshold:.4g} (Bonferroni)."]
            for key, label in METRICS.items():
                out += ["", f"## {label}@{self.k}", "",
                        "| variant | users | impressions | hits | mean | 95% CI | delta | lift "
                        "| p | significant |",
                        "|---|---:|---:|---:|---:|---|---:|---:|---:|---|"]
                for v in self.variants:
                    m: MetricResult = getattr(v, key)
                    name = f"{v.variant} (control)" if v.is_control else v.variant
                    compare = (["", "", "", ""] if v.is_control else
                               [_num(m.delta, "+.4f"), _pct(m.lift), _p(m.p_value, bare=True),
                                _significance(m.p_value, m.significant)])
                    out.append("| " + " | ".join([
                        name, str(v.n_users), str(v.n_impressions), str(v.hits),
                        _num(m.mean, ".4f"),
                        f"[{_num(m.ci_low, '.4f')}, {_num(m.ci_high, '.4f')}]", *compare])
                        + " |")
        if self.interleaving:
            out += ["", f"## Interleaving (team draft, clicks in the first {self.k})", "",
                    "| variant | arms | wins | ties | no clicks | users | preference | p "
                    "| significant |", "|---|---|---|---:|---:|---:|---:|---:|---|"]
            for il in self.interleaving:
                out.append(f"| {il.variant} | {' vs '.join(il.arms)} | "
                           f"{'-'.join(map(str, il.wins))} | {il.ties} | {il.no_clicks} | "
                           f"{il.n_users} | {_num(il.preference, '+.3f')} | "
                           f"{_p(il.p_value, bare=True)} | "
                           f"{_significance(il.p_value, il.significant)} |")
        if self.shadows:
            out += ["", "## Shadow variants (compared with the served list)", "",
                    "| shadow | scored | overlap mean | p10 | p50 | correlation mean | p10 | p50 |",
                    "|---|---:|---:|---:|---:|---:|---:|---:|"]
            for s in self.shadows:
                out.append(f"| {s.shadow_variant} | {s.count} | {_num(s.overlap_mean, '.3f')} "
                           f"| {_num(s.overlap_p10, '.3f')} | {_num(s.overlap_p50, '.3f')} | "
                           f"{_num(s.correlation_mean, '.3f')} | "
                           f"{_num(s.correlation_p10, '.3f')} | "
                           f"{_num(s.correlation_p50, '.3f')} |")
        lines = self.verdicts() if verdicts else []
        if lines:
            out += ["", "## Verdicts", "", *(f"- {line}" for line in lines)]
        return "\n".join(out) + "\n"


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _num(x: float, spec: str) -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, spec)


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:+.0%}"


def _p(p: float, bare: bool = False) -> str:
    if not math.isfinite(p):
        text = "n/a"
    elif p < 1e-4:
        text = "<0.0001"
    else:
        text = f"{p:.4f}"
    if bare:
        return text
    return f"p{text}" if text.startswith("<") else f"p={text}"


def _significance(p: float, significant: bool) -> str:
    if not math.isfinite(p):
        return "no test (too few users or no variation)"
    return "significant" if significant else "not significant"


# -- the computation -------------------------------------------------------------------------


def _negative(event: str, weight: float, negative_events: Collection[str]) -> bool:
    return normalise(event) in negative_events or weight < 0


def attribute(contents: LogContents, window_s: float,
              negative_events: Collection[str] = NEGATIVE_EVENTS,
              ) -> tuple[dict[str, set[str]], Attribution]:
    """Credited item ids per impression request id, and where every outcome went."""
    negatives = {normalise(e) for e in negative_events}
    by_id = {imp.request_id: imp for imp in contents.impressions}
    per_user: dict[str, list[Impression]] = defaultdict(list)
    for imp in sorted(contents.impressions, key=lambda r: r.ts):
        per_user[imp.user_id].append(imp)
    times = {user: [imp.ts for imp in imps] for user, imps in per_user.items()}
    credited: dict[str, set[str]] = defaultdict(set)
    by_request = by_time = unattributed = negative = 0
    for out in contents.outcomes:
        is_negative = _negative(out.event, out.weight, negatives)
        negative += is_negative
        named = by_id.get(out.follows_request_id) if out.follows_request_id else None
        if named is not None and named.user_id == out.user_id:
            target = named
            by_request += 1
        elif out.follows_request_id and named is None:  # a list this report does not hold
            unattributed += 1
            continue
        else:
            target = None
            user_times = times.get(out.user_id)
            if user_times:
                i = bisect.bisect_right(user_times, out.ts) - 1
                if i >= 0 and out.ts - user_times[i] <= window_s:
                    target = per_user[out.user_id][i]
            if target is not None:  # unless a list from outside the report came between
                other = contents.other_lists.get(out.user_id, ())
                j = bisect.bisect_right(other, out.ts) - 1
                if j >= 0 and other[j] > target.ts:
                    target = None
            if target is None:
                unattributed += 1
                continue
            by_time += 1
        if not is_negative:
            credited[target.request_id].add(out.item_id)
    return credited, Attribution(len(contents.outcomes), by_request, by_time, unattributed,
                                 negative)


def impression_metrics(items: Iterable[str], credited: Collection[str],
                       k: int) -> tuple[float, float]:
    """(hit@k, NDCG@k) of one list given the credited items (binary relevance)."""
    top = list(dict.fromkeys(items))[:k]  # a repeated item counts once, at its first place
    dcg = sum(1.0 / math.log2(rank + 2) for rank, item in enumerate(top) if item in credited)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(credited), k)))
    return (1.0 if dcg > 0 else 0.0), (dcg / ideal if ideal > 0 else 0.0)


def mean_ci(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and its t confidence interval (NaN bounds with fewer than two values)."""
    n = len(values)
    if n == 0:
        return NAN, NAN, NAN
    mean = float(np.mean(values))
    if n < 2:
        return mean, NAN, NAN
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * np.std(values, ddof=1)
                 / math.sqrt(n))
    return mean, mean - half, mean + half


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Welch p-value; NaN when it is undefined (a side with fewer than two users, or
    no variation on either side)."""
    if len(a) < 2 or len(b) < 2:
        return NAN
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return p if math.isfinite(p) else NAN


def _choose_control(users: dict[str, dict[str, list]], impressions: Counter,
                    control: str | None) -> str | None:
    if control is not None:
        if control not in users:
            known = ", ".join(sorted(users)) or "none"
            raise ValueError(f"control variant {control!r} has no A/B impressions in the log "
                             f"(variants: {known})")
        return control
    if not users:
        return None
    return min(users, key=lambda v: (-len(users[v]), -impressions[v], v))


def _interleaving(variant: str, imps: list[Impression], credited: dict[str, set[str]],
                  k: int) -> InterleavingResult:
    arms = tuple(sorted({t for imp in imps for t in imp.teams}))
    wins = dict.fromkeys(arms, 0)
    ties = no_clicks = 0
    for imp in imps:
        clicked = credited.get(imp.request_id, set())
        counts = Counter(team for item, team in list(zip(imp.items, imp.teams,
                                                         strict=True))[:k]
                         if item in clicked)
        if not counts:
            no_clicks += 1
            continue
        best = max(counts.values())
        leaders = [arm for arm, c in counts.items() if c == best]
        if len(leaders) == 1:
            wins[leaders[0]] += 1
        else:
            ties += 1
    won = tuple(wins[a] for a in arms)
    p = preference = NAN
    if len(arms) == 2:
        if won[0] + won[1] > 0:
            p = float(stats.binomtest(won[0], won[0] + won[1], 0.5).pvalue)
        if sum(won) + ties > 0:
            preference = (won[0] - won[1]) / (won[0] + won[1] + ties)
    return InterleavingResult(variant, arms, won, ties, no_clicks, len(imps),
                              len({imp.user_id for imp in imps}), preference, p, False, None)


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else NAN


def _shadows(contents: LogContents) -> list[ShadowSummary]:
    groups: dict[str, list] = defaultdict(list)
    for s in contents.shadows:
        groups[s.shadow_variant].append(s)
    out = []
    for name in sorted(groups):
        overlap = np.array([s.overlap for s in groups[name]], dtype=float)
        overlap = overlap[np.isfinite(overlap)]
        corr = np.array([s.correlation for s in groups[name]], dtype=float)
        corr = corr[np.isfinite(corr)]
        out.append(ShadowSummary(
            name, len(groups[name]),
            float(overlap.mean()) if len(overlap) else NAN, _percentile(overlap, 10),
            _percentile(overlap, 50), float(corr.mean()) if len(corr) else NAN,
            _percentile(corr, 10), _percentile(corr, 50), len(corr)))
    return out


def experiment_report(contents: LogContents, k: int = 10, window_s: float = 86400.0,
                      control: str | None = None, alpha: float = 0.05,
                      negative_events: Collection[str] = NEGATIVE_EVENTS) -> Report:
    """The report of the experiment(s) in ``contents``; see the module docstring.

    ``control`` defaults to the A/B variant with the most users; a name without A/B
    impressions raises ValueError.
    """
    if k < 1 or not window_s >= 0 or not 0 < alpha < 1:
        raise ValueError("k must be >= 1, the window >= 0 and alpha in (0, 1)")
    credited, attribution = attribute(contents, window_s, negative_events)
    # variant -> user -> [(hit, ndcg)] for the A/B impressions
    per_user: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list))
    impressions: Counter = Counter()
    degraded: Counter = Counter()
    hits: Counter = Counter()
    interleaved: dict[str, list[Impression]] = defaultdict(list)
    for imp in contents.impressions:
        if imp.teams:
            interleaved[imp.variant].append(imp)
            continue
        hit, ndcg = impression_metrics(imp.items, credited.get(imp.request_id, set()), k)
        per_user[imp.variant][imp.user_id].append((hit, ndcg))
        impressions[imp.variant] += 1
        degraded[imp.variant] += imp.degraded
        hits[imp.variant] += int(hit)
    control = _choose_control(per_user, impressions, control)
    comparisons = [v for v in per_user if v != control]
    threshold = alpha / max(1, len(comparisons))

    values: dict[str, dict[str, np.ndarray]] = {}
    for variant, users in per_user.items():
        means = np.array([np.mean(rows, axis=0) for rows in users.values()], dtype=float)
        values[variant] = {"hit_rate": means[:, 0], "ndcg": means[:, 1]}

    def metric(variant: str, key: str) -> MetricResult:
        mean, low, high = mean_ci(values[variant][key])
        if variant == control:
            return MetricResult(mean, low, high)
        base = float(np.mean(values[control][key]))
        p = welch_p(values[variant][key], values[control][key])
        delta = mean - base
        return MetricResult(mean, low, high, delta, delta / base if base else NAN, p,
                            bool(math.isfinite(p) and p < threshold))

    order = sorted(per_user, key=lambda v: (v != control, v))
    variants = [VariantResult(v, v == control, len(per_user[v]), impressions[v], degraded[v],
                              hits[v], metric(v, "hit_rate"), metric(v, "ndcg"))
                for v in order]
    seen_in: Counter = Counter(user for users in per_user.values() for user in users)

    results = [_interleaving(v, interleaved[v], credited, k) for v in sorted(interleaved)]
    il_threshold = alpha / max(1, len(results))
    for i, r in enumerate(results):
        if math.isfinite(r.p_value) and r.p_value < il_threshold:
            winner = r.arms[0] if r.wins[0] > r.wins[1] else r.arms[1]
            results[i] = replace(r, significant=True, winner=winner)
    return Report(
        experiments=tuple(sorted({imp.experiment for imp in contents.impressions})),
        k=k, window_s=float(window_s), alpha=alpha, control=control,
        n_comparisons=len(comparisons), attribution=attribution, variants=variants,
        interleaving=results, shadows=_shadows(contents),
        users_in_several_variants=sum(1 for c in seen_in.values() if c > 1))
