"""`shortlist-train compact-events`: move the shared stream's old entries to files, then trim."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compact-events",
        help="archive the shared stream's entries no served version needs, then trim them",
        description="The shared stream (SHORTLIST_RETRIEVAL_STATE_BACKEND=redis) grows with "
                    "every write. This archives the entries up to the oldest stream_through of "
                    "the artifact root's versions into DIR (JSON lines with checksums, synced), "
                    "records that in Redis, and only then trims them from the stream. Later "
                    "fits read the archive and the rest of the stream, so nothing acknowledged "
                    "leaves the training data. Run it where DIR is at the path every training "
                    "machine sees it; safe to repeat, and to re-run after an interruption.")
    p.add_argument("--events", required=True, metavar="URL",
                   help="the shared stream, redis://HOST:PORT/DB[#STREAM]")
    p.add_argument("--archive", required=True, type=Path, metavar="DIR",
                   help="the archive directory (created; always the same one per stream)")
    p.add_argument("--artifacts", required=True, type=Path, metavar="ROOT",
                   help="the artifact root the replicas serve from: entries after its oldest "
                        "version's stream_through stay in the stream for their replay")
    p.add_argument("--through", default=None, metavar="ID",
                   help="archive no further than this stream id (default: the safe point)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shortlist.common.eventid import StreamId
    from shortlist.retrieval.stream import StreamError, StreamLog
    from shortlist.training.datasets import DatasetError
    from shortlist.training.stream_archive import ArchiveError, compact, safe_point

    try:
        through, pinned_by = safe_point(args.artifacts)
        if args.through:
            through = min(through, StreamId.parse(args.through))
    except (ArchiveError, ValueError) as exc:
        raise DatasetError(str(exc)) from exc
    if through == StreamId.ZERO:
        print(f"nothing can be archived: version {pinned_by} under {args.artifacts} was not "
              "trained on this stream (no stream_through in its manifest), so a replica of it "
              "replays the whole stream; remove that version or refit with --events "
              f"{args.events}", file=sys.stderr)
    log = StreamLog.from_source(args.events)
    try:
        summary = compact(log, args.archive, through)
    except (StreamError, ArchiveError) as exc:
        raise DatasetError(f"compact-events: {exc}") from exc
    finally:
        log.close()
    print(json.dumps(summary, indent=1))
    return 0
