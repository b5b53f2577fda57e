"""`shortlist-retrieval`: run the retrieval server until SIGTERM."""

from __future__ import annotations

import sys


def main() -> int:
    from retrieval.server import create_server
    from retrieval.settings import RetrievalSettings
    from shortlist.common.serving import run_main

    return run_main("retrieval", RetrievalSettings, create_server)


if __name__ == "__main__":
    sys.exit(main())
