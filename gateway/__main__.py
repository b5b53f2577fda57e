"""`shortlist-gateway`: run the gateway server until SIGTERM."""

from __future__ import annotations

import os
import sys


def main() -> int:
    # Before numpy is first imported (by the imports below), or OpenBLAS has already started
    # a thread per core: one thread is faster per request (docs/performance.md).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from shortlist.common.serving import run_main
    from shortlist.gateway.server import create_server
    from shortlist.gateway.settings import GatewaySettings

    return run_main("gateway", GatewaySettings, create_server)


if __name__ == "__main__":
    sys.exit(main())
