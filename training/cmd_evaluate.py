"""`shortlist-train evaluate`: the leaderboard on one dataset and protocol."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from shortlist.training.cmd_fit import (
    add_generator_options,
    chosen_registry,
    event_weights,
    without_events,
)
from shortlist.training.protocol import PROTOCOLS


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="score every model and peer on one split")
    p.add_argument("--dataset", default="ml-latest-small",
                   help="ml-latest-small (bundled), ml-100k, or a directory")
    p.add_argument("--protocol", default=None, choices=PROTOCOLS,
                   help="leave-last-out (each user's latest item) or random-holdout (a random "
                        "one); default: leave-last-out when the data has timestamps, else "
                        "random-holdout")
    p.add_argument("--export-split", type=Path, default=None,
                   help="write the split here as a generic-format dataset (interactions.csv: "
                        "the training part, items.csv, test.csv), for other libraries or "
                        "`fit --dataset DIR`")
    p.add_argument("--output", type=Path, default=None, help="write the JSON report here")
    p.add_argument("--no-ablation", action="store_true", help="skip the feature ablation")
    p.add_argument("--no-tune", action="store_true",
                   help="keep default hyperparameters (quick look, not for the leaderboard)")
    p.add_argument("--row-order-is-time", action="store_true",
                   help="generic format without a timestamp column: read the rows' order as "
                        "time (only for logs written in time order); by default such data "
                        "has no time, and splits are random")
    add_generator_options(p)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shortlist.training.leaderboard import format_leaderboard
    from shortlist.training.leaderboard import run as evaluate
    from shortlist.training.params import FitParams

    report = evaluate(args.dataset, args.protocol, args.export_split, 10, not args.quiet,
                      FitParams(seed=args.seed, tune=not args.no_tune,
                                event_weights=event_weights(args)),
                      with_ablation=not args.no_ablation,
                      row_order_time=args.row_order_is_time, registry=chosen_registry(args),
                      ignore_events=without_events(args))
    print(format_leaderboard(report))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=1, default=float))
        print(f"report written to {args.output}")
    return 0
