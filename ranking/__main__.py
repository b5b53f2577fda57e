"""`shortlist-ranking`: run the ranking server until SIGTERM."""

from __future__ import annotations

import sys

from shortlist.common.threads import limit_math_threads


def main() -> int:
    limit_math_threads()  # before the imports below load numpy
    from shortlist.common.serving import run_main
    from shortlist.ranking.server import create_server
    from shortlist.ranking.settings import RankingSettings

    return run_main("ranking", RankingSettings, create_server)


if __name__ == "__main__":
    sys.exit(main())
