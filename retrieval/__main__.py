"""`shortlist-retrieval`: run the retrieval server until SIGTERM."""

from __future__ import annotations

import sys

from shortlist.common.threads import limit_math_threads


def main() -> int:
    limit_math_threads()  # before the imports below load numpy
    from shortlist.common.serving import run_main
    from shortlist.retrieval.server import create_server
    from shortlist.retrieval.settings import RetrievalSettings

    return run_main("retrieval", RetrievalSettings, create_server)


if __name__ == "__main__":
    sys.exit(main())
