"""Offline work for Shortlist: train and publish models, measure them, batch-recommend.

commands:
  fit        fit every model on a dataset, tune it, and publish an artifact version that the
             servers pick up
  evaluate   score every model (and the peer baselines) on a held-out split: the leaderboard
  recommend  top-k recommendations for a file of user ids, from an artifact version, without
             the servers
  synth      write a synthetic dataset in the generic format
  import-dataset
             convert a public dataset shipped in a registry package (a Debian .deb) to the
             generic format
  experiment-report
             an experiment's variants compared (hit rate, NDCG, tests) from the gateways'
             impressions logs

Datasets (fit, evaluate) are a directory, or a name looked up under each directory of
$SHORTLIST_DATA_DIR, the bundled data/ directory and the shared datasets; `shortlist-train fit
--help` lists the places. Errors are one line on stderr and exit with status 2.
"""

# How this module is put together: each command lives in its own module exposing
# ``register(subparsers)``, which adds its parser and sets ``func``; this module only assembles
# them, adds the shared dataset help, and turns known errors into one line.

from __future__ import annotations

import argparse
import logging
import sys

from shortlist.common.threads import limit_math_threads

COMMAND_MODULES = ("shortlist.training.cmd_fit", "shortlist.training.cmd_evaluate",
                   "shortlist.training.batch", "shortlist.training.synth",
                   "shortlist.training.registry_datasets",
                   "shortlist.training.cmd_experiment_report", "shortlist.training.cmd_compact")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from shortlist.training.datasets import DATASET_HELP

    parser = argparse.ArgumentParser(prog="shortlist-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a command still being written
        module.register(sub)
    for command in sub.choices.values():
        # Here rather than in each command, so every --dataset explains names the same way.
        takes_dataset = any("--dataset" in a.option_strings for a in command._actions)
        if takes_dataset and command.epilog is None:
            command.epilog = DATASET_HELP
            command.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    limit_math_threads()  # before the commands' modules load numpy
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from shortlist.common.artifacts import ArtifactError
    from shortlist.training.datasets import DatasetError
    from shortlist.training.fit import FitError

    try:
        return args.func(args)
    except (DatasetError, FitError, ArtifactError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
