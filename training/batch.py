"""`shortlist-train recommend`: top-k recommendations for a list of users, offline.

Runs the code path the servers run, end to end: the artifact version is resolved and verified
like the servers do it, candidates come from the retrieval server's ``Retriever`` (so unknown
users take the same cold-start path) with the candidate count tuning chose (what the gateway
asks for by default), and ranking is the ranking server's ``RankingPipeline``. Offline rows
therefore equal what ``Recommend`` returns.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

HEADER = ("user_id", "rank", "item_id", "score")

Row = tuple[str, int, str, float]


def recommend_batch(version_dir: Path, user_ids: Iterable[str], k: int,
                    candidates: int = 0, mmr_lambda: float | None = None,
                    progress: bool = False) -> list[Row]:
    """(user_id, rank, item_id, score) rows, rank 1-based, for each distinct user in order.

    ``version_dir`` is verified against its manifest before anything is loaded (ArtifactError
    otherwise). Unknown users are served like the retrieval server serves them (cold start).
    ``candidates`` 0 takes the version's tuned count, as the gateway does by default.
    """
    from tqdm import tqdm

    from shortlist.common import artifacts
    from shortlist.ranking.bundle import RankingModels
    from shortlist.retrieval.bundle import RetrievalModels
    from shortlist.retrieval.retriever import RetrieveQuery, Retriever

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if candidates < 0:
        raise ValueError(f"candidates must be >= 0, got {candidates}")
    if mmr_lambda is not None and not 0.0 <= mmr_lambda <= 1.0:
        raise ValueError(f"mmr_lambda must be in [0, 1], got {mmr_lambda}")
    version_dir = Path(version_dir)
    manifest = artifacts.verify(version_dir)
    models = RetrievalModels.load(version_dir)
    # Exactly what the gateway requests: its setting if set (at least k), else the tuned count.
    n_candidates = max(candidates, k) if candidates else 0
    retriever = Retriever(models, manifest.version,
                          max(n_candidates, k, models.config.max_candidates))
    ranking = RankingModels.load(version_dir)
    pipeline = ranking.pipeline()
    vocab = ranking.catalog.vocab

    users = list(dict.fromkeys(user_ids))
    rows: list[Row] = []
    for user_id in tqdm(users, desc="recommend", unit="user", disable=not progress,
                        file=sys.stderr):
        cands = retriever.retrieve(
            RetrieveQuery(user_id=user_id, max_candidates=n_candidates, k=k)).candidates
        if len(cands) == 0:  # the gateway serves nothing either
            continue
        pos, scores, _ = pipeline.rank(cands, k, mmr_lambda)
        ids = vocab.ids(cands.items[pos])
        for rank, (item_id, score) in enumerate(zip(ids, scores.tolist(), strict=True), 1):
            rows.append((user_id, rank, item_id, float(score)))
    return rows


def read_user_ids(lines: Iterable[str]) -> list[str]:
    """One id per line; blank lines and a leading ``user_id`` header are skipped."""
    ids: list[str] = []
    first = True
    for line in lines:
        user = line.strip()
        if not user:
            continue
        if first and user == "user_id":
            first = False
            continue
        first = False
        ids.append(user)
    return ids


def write_rows(rows: Iterable[Row], out: TextIO) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADER)
    w.writerows(rows)


def register(sub) -> None:
    p = sub.add_parser("recommend", help="top-k recommendations for a file of user ids",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"),
                   help="artifact root (latest version) or one version directory")
    p.add_argument("--version", default="", help="pin this version under the root")
    p.add_argument("--users", required=True,
                   help="file of user ids, one per line ('-': stdin)")
    p.add_argument("-k", type=int, default=10, help="recommendations per user")
    p.add_argument("--output", default="-", help="CSV to write ('-': stdout)")
    p.add_argument("--candidates", type=int, default=0,
                   help="candidates asked of retrieval, at least k (default 0: the count "
                        "tuning chose, as the gateway asks by default)")
    p.add_argument("--mmr-lambda", type=float, default=None,
                   help="MMR lambda in [0, 1]; unset keeps the artifact's value")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run, parser=p)


def run(args: argparse.Namespace) -> int:
    from shortlist.common import artifacts

    if args.k < 1:
        args.parser.error(f"-k must be >= 1, got {args.k}")
    if args.candidates < 0:
        args.parser.error(f"--candidates must be >= 0, got {args.candidates}")
    if args.mmr_lambda is not None and not 0.0 <= args.mmr_lambda <= 1.0:
        args.parser.error(f"--mmr-lambda must be in [0, 1], got {args.mmr_lambda}")
    start = time.perf_counter()
    if args.users == "-":
        user_ids = read_user_ids(sys.stdin)
    else:
        with open(args.users) as fh:
            user_ids = read_user_ids(fh)
    version_dir = artifacts.resolve(args.artifacts, args.version)
    rows = recommend_batch(version_dir, user_ids, args.k, args.candidates, args.mmr_lambda,
                           progress=not args.quiet)
    if args.output == "-":
        write_rows(rows, sys.stdout)
        sys.stdout.flush()
    else:
        with open(args.output, "w", newline="") as fh:
            write_rows(rows, fh)
    n_users = len(dict.fromkeys(user_ids))
    print(f"recommend: {n_users} users, {len(rows)} rows, "
          f"{time.perf_counter() - start:.1f}s ({version_dir.name})", file=sys.stderr)
    return 0
