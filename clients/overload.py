"""Find the highest rate the running stack sustains, then measure it at twice that rate.

    python -m shortlist.clients.overload --target 127.0.0.1:50051 --output reports/overload.json

"Sustained" means no failed call and end-to-end p99 within ``--p99-ms``. At twice that rate
the per-server concurrency limits refuse the excess with RESOURCE_EXHAUSTED, and what matters
is the latency of the calls that were accepted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shortlist.clients import bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--rates", type=float, nargs="+", default=[20, 40, 60, 80, 100, 120])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--p99-ms", type=float, default=50.0)
    parser.add_argument("--users", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    users = ([u.strip() for u in args.users.read_text().splitlines() if u.strip()]
             if args.users else [str(i) for i in range(1, 601)])
    steps, sustained = [], None
    for rate in args.rates:
        rep = bench.run(args.target, rate, args.duration, users)
        p99 = rep["stages"].get("end_to_end", {}).get("p99_ms", float("inf"))
        ok = not rep["errors"] and p99 <= args.p99_ms
        steps.append({"rate": rate, "qps": rep["qps"], "p99_ms": p99, "errors": rep["errors"],
                      "sustained": ok})
        print(f"rate {rate:>6.0f}: qps {rep['qps']:.1f}, p99 {p99:.1f} ms, errors "
              f"{rep['errors'] or 'none'}", flush=True)
        if not ok:
            break
        sustained = rate
    if sustained is None:
        print("no rate sustained", file=sys.stderr)
        return 1
    over = bench.run(args.target, 2 * sustained, args.duration, users)
    print(f"\nat 2 x {sustained:.0f} = {2 * sustained:.0f} requests/s:")
    print(bench.summary(over))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"p99_budget_ms": args.p99_ms, "steps": steps,
                                           "sustained_rate": sustained, "overload": over},
                                          indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
