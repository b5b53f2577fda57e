"""`shortlist-train experiment-report`: an experiment's results from the gateways' logs."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shortlist.training.experiment_report import Report

PLOT_NEEDS = "--plot needs matplotlib, which is not installed (pip install -e '.[report]')"


def parse_time(text: str) -> float:
    """Unix seconds, or an ISO 8601 date or date-time (UTC unless it names a zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither unix seconds nor an ISO date (2025-06-01, "
            "2025-06-01T12:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type that refuses zero and negatives, naming the value."""

    def parse(text: str) -> float:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text} is not positive")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its error
    return parse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment-report",
        help="hit rate and NDCG per experiment variant, with confidence intervals and tests, "
             "from the gateways' impressions logs",
        description="Join what each variant served to what users did next (the gateways' "
                    "impressions logs) and compare the variants: per-user hit rate and NDCG "
                    "with 95% confidence intervals, Welch's t-test against the control "
                    "(Bonferroni-corrected), team-draft interleaving wins with a binomial "
                    "test, and shadow variants' overlap with what was served.")
    p.add_argument("--impressions", nargs="+", type=Path, required=True, metavar="PATH",
                   help="the impressions log of each gateway (read-only; live files are fine)")
    p.add_argument("--experiment", default=None,
                   help="the experiment to report (default: the most recent one in the logs)")
    p.add_argument("--k", type=positive(int), default=10,
                   help="hit rate and NDCG over the first K items (default 10)")
    p.add_argument("--window", type=positive(float), default=24.0, metavar="HOURS",
                   help="an interaction that names no request is credited to the user's "
                        "latest impression at most this old (default 24)")
    p.add_argument("--control", default=None,
                   help="the variant the others are compared with (default: the one with the "
                        "most users)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="significance level, before the Bonferroni correction (default 0.05)")
    p.add_argument("--since", type=parse_time, default=None,
                   help="only impressions from then on (ISO date or unix seconds)")
    p.add_argument("--until", type=parse_time, default=None,
                   help="only impressions before then (ISO date or unix seconds)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT.json",
                   help="write the report as JSON here")
    p.add_argument("--plot", type=Path, default=None, metavar="OUT.png",
                   help="bar chart of hit rate and NDCG per variant with 95%% CIs (needs "
                        "matplotlib: the 'report' extra)")
    p.set_defaults(func=run)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from shortlist.common.impressions import ImpressionLogError, latest_experiment, read_log
    from shortlist.training.experiment_report import experiment_report

    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        return fail(PLOT_NEEDS)  # before the work, not after it
    if not 0 < args.alpha < 1:
        return fail(f"--alpha {args.alpha:g} is not in (0, 1)")
    since = 0.0 if args.since is None else args.since
    until = math.inf if args.until is None else args.until
    window_s = args.window * 3600.0
    paths = list(args.impressions)
    files = ", ".join(map(str, paths))
    try:
        experiment = args.experiment
        if experiment is None:
            experiment = latest_experiment(paths)
            if experiment is None:
                return fail(f"no impressions in {files}")
        contents = read_log(paths, since, until, experiment, outcomes_until=until + window_s)
        if not contents.impressions:
            name = repr(experiment) if experiment else "(no experiment)"
            return fail(f"no impressions of experiment {name} in {files}"
                        + (" in the chosen time range"
                           if args.since is not None or args.until is not None else ""))
        report = experiment_report(contents, k=args.k, window_s=window_s,
                                   control=args.control, alpha=args.alpha)
    except (ImpressionLogError, ValueError) as exc:
        return fail(str(exc))

    print(report.to_markdown(verdicts=False))
    for line in report.verdicts():
        print(line)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=1))
        print(f"report written to {args.json}")
    if args.plot is not None:
        plot(report, args.plot)
        print(f"chart written to {args.plot}")
    return 0


def plot(report: Report, path: Path) -> None:
    """Hit rate and NDCG per variant with their confidence intervals, and the interleaving
    preferences if any (matplotlib, optional)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("hit_rate", f"hit rate@{report.k}"), ("ndcg", f"NDCG@{report.k}")]
    n = len(panels) + bool(report.interleaving)
    fig, axes = plt.subplots(1, n, figsize=(4.8 * n, 3.8), squeeze=False)
    names = [v.variant for v in report.variants]
    for ax, (key, label) in zip(axes[0], panels, strict=False):
        metrics = [getattr(v, key) for v in report.variants]
        means = [m.mean for m in metrics]
        errors = [[_gap(m.mean - m.ci_low) for m in metrics],
                  [_gap(m.ci_high - m.mean) for m in metrics]]
        colors = ["#7f7f7f" if v.is_control else "#d62728" if getattr(v, key).significant
                  else "#1f77b4" for v in report.variants]
        ax.bar(names, means, yerr=errors, capsize=4, color=colors)
        ax.set_title(f"{label} (per-user mean, 95% CI)", fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        if not names:
            ax.text(0.5, 0.5, "no A/B impressions", ha="center", transform=ax.transAxes)
    if report.interleaving:
        ax = axes[0][-1]
        labels = [f"{r.variant}\n{' vs '.join(r.arms)}" for r in report.interleaving]
        prefs = [r.preference if math.isfinite(r.preference) else 0.0
                 for r in report.interleaving]
        colors = ["#d62728" if r.significant else "#1f77b4" for r in report.interleaving]
        ax.barh(labels, prefs, color=colors)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_xlim(-1, 1)
        ax.set_title("interleaving preference (> 0: first arm)", fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
    experiments = ", ".join(e or "(no experiment)" for e in report.experiments)
    fig.suptitle(f"experiment {experiments} (red: significant)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _gap(x: float) -> float:
    return x if math.isfinite(x) else 0.0
