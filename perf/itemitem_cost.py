"""What one user's item-item scores cost: history length x weights kept per item.

The item-item generators (EASE, ItemKNN) score a user by summing the weight rows of their
history items (``weighted_row_sum``), so the work is history x weights per item whatever the
catalog. This times that sum on a random sparse matrix of the given shape, so what a heavy
user costs at each weight count can be read off before choosing a budget.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from shortlist.perf.report import time_calls
from shortlist.retrieval.generators.itemitem import weighted_row_sum


def random_weights(items: int, kept: int, rng: np.random.Generator) -> sp.csr_matrix:
    """``items`` x ``items`` CSR with ``kept`` distinct random columns per row."""
    kept = min(kept, items)
    indices = np.concatenate([np.sort(rng.choice(items, kept, replace=False))
                              for _ in range(items)]).astype(np.int32)
    data = rng.standard_normal(items * kept).astype(np.float32)
    return sp.csr_matrix((data, indices, np.arange(items + 1, dtype=np.int64) * kept),
                         shape=(items, items))


def measure(items: int, kept: Sequence[int], history: Sequence[int], iterations: int = 20,
            repeats: int = 3, seed: int = 0) -> list[dict]:
    """One row per (weights kept, history length): the row sum's latency statistics."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in kept:
        w = random_weights(items, k, rng)
        for h in history:
            h = min(h, items)
            picked = np.sort(rng.choice(items, h, replace=False))
            strength = rng.random(h)
            stats = time_calls({"sum": (lambda w=w, p=picked, s=strength:
                                        weighted_row_sum(w, p, s), iterations)},
                               repeats)["sum"]
            rows.append({"items": items, "kept": int(w.indptr[1]), "history": h,
                         "entries": h * int(w.indptr[1]), **stats})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| weights per item | history | entries summed | p50 ms | best round p50 ms |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['kept']:,} | {r['history']:,} | {r['entries']:,} | {r['p50_ms']:.2f} | "
              f"{r['best_round_p50_ms']:.2f} |" for r in rows]
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shortlist.perf.itemitem_cost",
                                description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=9742, help="catalog size")
    p.add_argument("--kept", type=_ints, default=[50, 200, 2053],
                   help="comma-separated weights kept per item")
    p.add_argument("--history", type=_ints, default=[50, 300, 1000, 2700],
                   help="comma-separated history lengths (distinct items)")
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=None, help="JSON report")
    args = p.parse_args(argv)
    started = time.time()
    rows = measure(args.items, args.kept, args.history, args.iterations, args.repeats,
                   args.seed)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "command": " ".join(["python -m shortlist.perf.itemitem_cost",
                                 *(argv if argv is not None else sys.argv[1:])]),
            "loadavg": list(os.getloadavg()), "rows": rows}, indent=1) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
