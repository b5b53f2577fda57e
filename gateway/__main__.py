"""`shortlist-gateway`: run the gateway server until SIGTERM."""

from __future__ import annotations

import sys

from shortlist.common.threads import limit_math_threads


def main() -> int:
    limit_math_threads()  # before the imports below load numpy
    from shortlist.common.serving import run_main
    from shortlist.gateway.server import create_server
    from shortlist.gateway.settings import GatewaySettings

    return run_main("gateway", GatewaySettings, create_server)


if __name__ == "__main__":
    sys.exit(main())
