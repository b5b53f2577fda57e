"""Memory of each step of a full model fit: what it holds afterwards and what it needs while
it runs.

``python -m shortlist.perf.fit_memory --dataset DIR [--manifest M] [--only a,b]`` loads and
encodes a dataset as ``fit`` does, then builds the user history and fits each registered
generator on every event, one at a time, printing per step its seconds, its peak resident
memory above what the process held when it started, and what it still holds after. A fit's
peak is what it holds plus the largest step's transient, so this says which step to shrink
(docs/performance.md, "Tuning at scale"). ``--manifest``: take the generators' values from
a published version (the ones a tuned fit chose), else the defaults.

The peak is the kernel's own (VmHWM, reset before each step through
``/proc/self/clear_refs``), not a sample, so a short spike is not missed. Linux only.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

from shortlist.retrieval.generators import default_registry
from shortlist.retrieval.generators.base import config_of, fit_or_skip
from shortlist.retrieval.history import UserHistory
from shortlist.training.datasets import load
from shortlist.training.fit import FitParams, encode
from shortlist.training.models import fit_data


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    # "5" resets the peak RSS (VmHWM) to the current RSS (proc(5), Linux 4.0+)
    Path("/proc/self/clear_refs").write_text("5")


@dataclass
class Step:
    name: str
    seconds: float
    peak_over_start_mb: float  # the step's peak RSS minus the RSS it started with
    held_mb: float  # RSS after the step minus the RSS it started with
    skipped: str | None = None


def measure(dataset: str, generators: dict | None = None,
            only: list[str] | None = None) -> tuple[float, list[Step]]:
    """(RSS in MB once the dataset is encoded, one ``Step`` per step)."""
    ds = load(dataset, False)
    from shortlist.common.catalog import ItemCatalog

    catalog = ItemCatalog(ds.items.item_ids, ds.items.titles, ds.items.categories,
                          ds.items.texts)
    p = FitParams()
    if generators:
        p.generators = dict(generators)
    users, ev = encode(ds, catalog.vocab, p.event_weights)
    del ds
    encoded = _status_kb("VmRSS") / 1e3
    data = fit_data(ev, users, catalog, p)
    steps: list[Step] = []
    held = []  # every step's output is kept, as fit_models keeps every generator

    def run(name: str, work) -> None:
        start = _status_kb("VmRSS")
        _reset_peak()
        t0 = time.perf_counter()
        out, why = work()
        seconds = time.perf_counter() - t0
        held.append(out)
        steps.append(Step(name, round(seconds, 1), round((_status_kb("VmHWM") - start) / 1e3),
                          round((_status_kb("VmRSS") - start) / 1e3), why))

    run("history", lambda: (UserHistory.from_events(ev.users, ev.items, ev.timestamps,
                                                    ev.weights, len(users)), None))
    for cls in default_registry():
        if only and cls.name not in only:
            continue
        run(cls.name, lambda cls=cls: fit_or_skip(cls, data, config_of(
            cls, p.generator(cls.name)), None))
    return encoded, steps


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--manifest", help="a published manifest.json: its generators' values")
    ap.add_argument("--only", help="comma-separated generator names (default: all)")
    args = ap.parse_args(argv)
    generators = (json.loads(Path(args.manifest).read_text())["parameters"]["generators"]
                  if args.manifest else None)
    encoded, steps = measure(args.dataset, generators,
                             args.only.split(",") if args.only else None)
    print(f"RSS once encoded: {encoded:,.0f} MB")
    print(f"{'step':<12} {'seconds':>8} {'peak over start MB':>19} {'held after MB':>14}")
    for s in steps:
        note = f"  (skipped: {s.skipped})" if s.skipped else ""
        print(f"{s.name:<12} {s.seconds:>8.1f} {s.peak_over_start_mb:>19,.0f} "
              f"{s.held_mb:>14,.0f}{note}")


if __name__ == "__main__":
    main()
