"""`shortlist-train`: offline commands."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from shortlist.common.artifacts import read_manifest


def _fit(args: argparse.Namespace) -> int:
    from training.fit import fit
    from training.params import FitParams

    version = fit(args.dataset, Path(args.out), FitParams(seed=args.seed),
                  progress=not args.quiet)
    manifest = read_manifest(version)
    models = manifest.data["metrics"]["models"]
    print(f"published {version}")
    print(f"{'model':<16}{'ndcg@10':>10}{'recall@10':>11}{'map@10':>9}")
    for name, row in models.items():
        print(f"{name:<16}{row['ndcg@10']:>10.4f}{row['recall@10']:>11.4f}{row['map@10']:>9.4f}")
    print(f"users evaluated: {next(iter(models.values()))['users']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(prog="shortlist-train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_fit = sub.add_parser("fit", help="fit all models and publish an artifact version")
    p_fit.add_argument("--dataset", default="ml-latest-small",
                       help="ml-latest-small (bundled), ml-100k, or a directory")
    p_fit.add_argument("--out", default="artifacts", help="artifact root directory")
    p_fit.add_argument("--seed", type=int, default=42)
    p_fit.add_argument("--quiet", action="store_true", help="no progress bars")
    p_fit.set_defaults(func=_fit)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except Exception as exc:  # the CLI edge: one readable line, not a traceback
        from training.datasets import DatasetError
        from training.fit import FitError

        if isinstance(exc, DatasetError | FitError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
