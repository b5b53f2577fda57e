"""`shortlist-gateway`: run the gateway server until SIGTERM."""

from __future__ import annotations

import sys


def main() -> int:
    from gateway.server import create_server
    from gateway.settings import GatewaySettings
    from shortlist.common.serving import run_main

    return run_main("gateway", GatewaySettings, create_server)


if __name__ == "__main__":
    sys.exit(main())
