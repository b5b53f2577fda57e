"""`shortlist-train fit`: fit every model and publish an artifact version."""

from __future__ import annotations

import argparse
from pathlib import Path

from shortlist.common.artifacts import list_versions, read_manifest


def peak_growth(manifest: dict) -> str:
    """Which phases raised the peak most: the peak only grows, so in the order the phases
    ended each one's step is what it added (``fit_phase_order``; by value where a manifest
    lacks it)."""
    by_name = manifest.get("fit_phase_peak_rss_bytes", {})
    order = [n for n in manifest.get("fit_phase_order", []) if n in by_name]
    peaks = [("", 0)] + ([(n, by_name[n]) for n in order] if len(order) == len(by_name)
                         else sorted(by_name.items(), key=lambda kv: kv[1]))
    steps = [(name, b - a) for (_, a), (name, b) in zip(peaks, peaks[1:], strict=False)]
    top = sorted((s for s in steps if s[1] >= 2**27), key=lambda s: -s[1])[:3]
    if not top:
        return ""
    return " (raised most by " + ", ".join(f"{n} +{d / 2**30:.2f}" for n, d in top) + ")"


def add_generator_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generators", default="", metavar="NAMES",
                   help="comma-separated generators to fit, in merge order (default: every "
                        "registered one; a generator whose input the data lacks is skipped)")
    p.add_argument("--without", default="", metavar="NAMES",
                   help="comma-separated generators to leave out (to measure what one adds); "
                        f"'{EVENTS}' ignores the data's event types (every event then counts "
                        "by its own weight, a dislike like a view)")


    p.add_argument("--event-weight", action="append", default=[], metavar="TYPE=WEIGHT",
                   help="how much an event of TYPE counts (signed: negative for a dislike), "
                        "over the standard table (view 1, click 1, rating 1, like 2, "
                        "purchase 4, skip -0.5, dislike -2); repeatable. Tuning then scales "
                        "the magnitudes of the types the data uses")


EVENTS = "events"  # the --without name of the data's event types (not a generator)


def without_events(args: argparse.Namespace) -> bool:
    return EVENTS in {n.strip() for n in args.without.split(",")}


def event_weights(args: argparse.Namespace) -> dict[str, float]:
    """``--event-weight`` pairs; a malformed one is a FitError saying what was expected."""
    from shortlist.common.events import UnknownEventType, check_name
    from shortlist.training.fit import FitError

    out: dict[str, float] = {}
    for pair in args.event_weight:
        name, _, value = pair.partition("=")
        try:
            weight = float(value)
            if not (weight == weight and abs(weight) < float("inf")):
                raise ValueError(value)
            out[check_name(name)] = weight
        except (ValueError, UnknownEventType) as exc:
            raise FitError(f"--event-weight {pair!r}: expected TYPE=WEIGHT, e.g. purchase=8 "
                           f"({exc})") from exc
    return out


def chosen_registry(args: argparse.Namespace):
    """The registry ``--generators`` and ``--without`` describe; an unknown name is a
    ``FitError`` naming the known ones."""
    from shortlist.retrieval.generators import Registry, default_registry
    from shortlist.training.fit import FitError

    registry = default_registry()
    try:
        if args.generators:
            registry = Registry(registry.get(n.strip()) for n in args.generators.split(",")
                                if n.strip())
        drop = [n.strip() for n in args.without.split(",") if n.strip() and n.strip() != EVENTS]
        for name in drop:
            default_registry().get(name)
    except KeyError as exc:
        raise FitError(f"--generators/--without: {exc.args[0]}") from exc
    return registry.without(*drop)


def register(sub) -> None:
    p = sub.add_parser("fit", help="fit all models and publish an artifact version")
    p.add_argument("--dataset", default="ml-latest-small",
                   help="ml-latest-small (bundled), ml-100k, or a directory")
    p.add_argument("--out", default="artifacts", help="artifact root directory")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--events", default=None, metavar="PATH|URL",
                   help="acknowledged writes to add: retrieval's event log (SQLite file) or "
                        "the shared stream, redis://HOST:PORT/DB[#STREAM]; the manifest "
                        "records how far it was read, and retrieval replays only what follows")
    p.add_argument("--no-tune", action="store_true",
                   help="keep the default hyperparameters (quick fits, benchmarks)")
    p.add_argument("--row-order-is-time", action="store_true",
                   help="generic format without a timestamp column: read the rows' order as "
                        "time (only for logs written in time order); by default such data "
                        "has no time, and splits are random")
    add_generator_options(p)
    p.add_argument("--engine", choices=["python", "spark"], default="python",
                   help="python (default): one process; spark: the data stage in Spark SQL and "
                        "ALS in Spark MLlib (needs pyspark and Java 17), same artifact")
    p.add_argument("--spark-master", default="local[2]", metavar="URL",
                   help="with --engine spark: local[N] or a cluster, e.g. "
                        "spark://HOST:7077 (default local[2])")
    p.add_argument("--spark-workdir", type=Path, default=None, metavar="DIR",
                   help="with --engine spark: where parquet goes between the stages; on a "
                        "cluster, a directory the driver and every executor see (NFS); "
                        "default: the system's temporary directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--if-missing", action="store_true",
                   help="do nothing (exit 0) if --out already holds a published version "
                        "(a */manifest.json); for one-shot jobs such as the compose trainer")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.if_missing:
        # Before anything is imported or loaded: the dataset is not even looked at.
        present = list_versions(Path(args.out))
        if present:
            print(f"artifacts present in {args.out} (newest {present[-1].name}); not fitting")
            return 0
    from shortlist.training.fit import fit
    from shortlist.training.params import FitParams

    registry = chosen_registry(args)
    params = FitParams(seed=args.seed, tune=not args.no_tune, event_weights=event_weights(args))
    version = fit(args.dataset, Path(args.out), params, progress=not args.quiet,
                  events=args.events, registry=registry, ignore_events=without_events(args),
                  row_order_time=args.row_order_is_time, engine=args.engine,
                  spark_master=args.spark_master, workdir=args.spark_workdir)
    manifest = read_manifest(version)
    models = manifest.data["metrics"]["models"]
    print(f"published {version}")
    print(f"{'model':<16}{'ndcg@10':>10}{'recall@10':>11}{'map@10':>9}")
    for name, row in models.items():
        print(f"{name:<16}{row['ndcg@10']:>10.4f}{row['recall@10']:>11.4f}{row['map@10']:>9.4f}")
    print(f"users evaluated: {next(iter(models.values()))['users']}")
    m = manifest.data
    phases = ", ".join(f"{k} {v:.0f}" for k, v in m.get("fit_phase_seconds", {}).items())
    print(f"fit took {m['fit_seconds']:.0f} s ({phases}); peak memory "
          f"{m['fit_peak_rss_bytes'] / 2**30:.2f} GiB{peak_growth(m)}")
    return 0
