"""`shortlist-ranking`: run the ranking server until SIGTERM."""

from __future__ import annotations

import sys


def main() -> int:
    from ranking.server import create_server
    from ranking.settings import RankingSettings
    from shortlist.common.serving import run_main

    return run_main("ranking", RankingSettings, create_server)


if __name__ == "__main__":
    sys.exit(main())
