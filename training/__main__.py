"""`shortlist-train`: offline commands (fit, evaluate, recommend).

Each command lives in its own module exposing ``register(subparsers)``, which adds its parser
and sets ``func``; this module only assembles them and turns known errors into one line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

COMMAND_MODULES = ("training.cmd_fit", "training.cmd_evaluate", "training.batch",
                   "training.synth")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="shortlist-train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a command still being written
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from shortlist.common.artifacts import ArtifactError
    from training.datasets import DatasetError
    from training.fit import FitError

    try:
        return args.func(args)
    except (DatasetError, FitError, ArtifactError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
