"""`shortlist-train evaluate`: every model on one split, scored the same way.

The pipeline is trained by ``training.fit.train_pipeline`` on the training part, exactly as
``fit`` trains on everything; peers are tuned on the same validation items (each training
user's latest remaining item) and refitted on the training part. Test items are used only to
score.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from shortlist.common.catalog import ItemCatalog
from shortlist.ranking.features import FeatureSpec
from shortlist.ranking.pipeline import RankingConfig, RankingPipeline
from shortlist.retrieval.als import AlsModel
from shortlist.retrieval.generators import Registry, default_registry
from shortlist.training import peers
from shortlist.training.cmd_fit import EVENTS
from shortlist.training.coldstart import evaluate_cold_start
from shortlist.training.datasets import load
from shortlist.training.evaluation import UNION, candidate_ablation, evaluate
from shortlist.training.fit import TuningGrid, score_examples, train_pipeline, train_ranker
from shortlist.training.params import FitParams
from shortlist.training.protocol import by_time, default_protocol, export_split, holdout_mask
from shortlist.training.split import encode, holdout, user_data

logger = logging.getLogger(__name__)

# Rows in this order; each generator alone goes between popularity and the candidate union.
HEAD_ROWS = ("random", "popularity")
TAIL_ROWS = (UNION, "peer_als", "peer_ease", "ranker", "ranker_mmr", "pipeline")
DESCRIPTIONS = {
    "random": "uniformly random unseen items",
    "popularity": "most-interacted items in the training data",
    UNION: "merged candidates of all generators, retrieval (RRF) order",
    "peer_als": "peer: implicit ALS tuned on validation (wide grid), exact scoring",
    "peer_ease": "peer: dense EASE (Steck 2019), lambda tuned on validation",
    "ranker": "generators + LightGBM LambdaRank",
    "ranker_mmr": "ranker + diversity re-ranking at the chosen setting",
    "pipeline": "Shortlist as served: the configuration fit publishes (guard rails)",
}


def describe(name: str, registry: Registry) -> str:
    if name in DESCRIPTIONS:
        return DESCRIPTIONS[name]
    if name in registry:
        doc = (registry.get(name).__doc__ or name).strip().splitlines()[0]
        return "generator: " + doc.rstrip(".")
    return name


def feature_groups(spec: FeatureSpec) -> dict[str, list[str]]:
    """Feature groups for the ablation: each is blanked and the ranker retrained without it.
    One group per generator and per similarity space, so a new one shows what it is worth."""
    groups = {f"generator {g}: score, rank, affinity": [f"{g}_score", f"{g}_rank",
                                                          f"{g}_affinity"]
              for g in spec.generators}
    groups["sources and retrieval order (RRF)"] = ["n_sources", "retrieval_rank",
                                                   "retrieval_score"]
    groups.update({f"{s} similarity to the user's items": [f"{s}_{kind}"
                                                           for kind in spec.similarity_kinds]
                   for s in spec.spaces})
    groups["popularity"] = ["popularity"]
    groups["trending score"] = ["trending"]
    if spec.time:
        groups["popularity at the user's time"] = ["pop_at_user_time"]
        groups["item age"] = ["item_age_days", "item_age_at_user_time"]
    groups["history length"] = ["history_length"]
    groups["genre affinity"] = ["genre_affinity"]
    if spec.events:
        groups["counts per event type"] = [f"events_{e}" for e in spec.events]
    return groups


def ablation(trained, p: FitParams) -> list[dict]:
    """Validation NDCG@10 with each feature group removed (ranker retrained without it)."""
    spec = trained.spec
    pipe = RankingPipeline(trained.ranker, trained.valid_stats,
                           RankingConfig(1.0, p.mmr_top_n, spec))
    base, _ = score_examples(trained.ranker, pipe, trained.valid_examples, 1.0)
    rows = [{"removed": "(none)", "ndcg@10": base, "delta": 0.0}]
    names = spec.names
    for group, features in feature_groups(spec).items():
        cols = [names.index(n) for n in features]
        ranker = train_ranker(trained.train_examples, trained.valid_examples, p,
                              p.ranker_num_leaves, spec, cols)
        ndcg, _ = score_examples(ranker, pipe, trained.valid_examples, 1.0, columns=cols)
        rows.append({"removed": group, "features": features, "ndcg@10": ndcg,
                     "delta": ndcg - base})
    return rows


def run(dataset: str, protocol: str | None = None, export_dir: Path | None = None,
        k: int = 10, progress: bool = True, p: FitParams | None = None,
        grid: TuningGrid | None = None, with_ablation: bool = True,
        peer_als_grid: list[dict] | None = None, registry: Registry | None = None,
        row_order_time: bool = False, ignore_events: bool = False) -> dict:
    """Evaluate on one split; ``ignore_events``: the test is carved as for typed data (only
    positive events are test items) but the pipeline is fitted blind to the types, so that
    the twin runs measure what the types add on the same test."""
    p = p or FitParams()
    registry = registry or default_registry()
    grid = grid if grid is not None else (TuningGrid() if p.tune else None)
    ds = load(dataset, row_order_time)
    protocol = protocol or default_protocol(ds.has_timestamps)
    carve_by_time = by_time(protocol, ds.has_timestamps)
    catalog = ItemCatalog(ds.items.item_ids, ds.items.titles, ds.items.categories,
                          ds.items.texts)
    users, ev = encode(ds, catalog.vocab, p.event_weights)
    test_mask = holdout_mask(ev, protocol, ds.has_timestamps, p.min_user_items, p.seed)
    train, test = ev.take(~test_mask), ev.take(test_mask)
    if ignore_events:
        train = train.untyped()
    if export_dir is not None:
        export_split(export_dir, users, catalog, train, test, ds.has_timestamps)
    n_users, n_items = len(users), len(catalog)

    fit_s: dict[str, float] = {}
    t0 = time.perf_counter()
    about_users = user_data(ds, users)
    trained = train_pipeline(train, users, catalog, p, grid, progress, ds.has_timestamps,
                             registry, by_time=carve_by_time, user_data=about_users)
    fit_s["pipeline"] = fit_s["ranker"] = fit_s["ranker_mmr"] = time.perf_counter() - t0
    fit_s.update(trained.models.fit_seconds)
    fit_s[UNION] = sum(trained.models.fit_seconds.values())
    fit_s["random"] = 0.0
    fit_s["popularity"] = 0.0

    # Peers: tuned on the same validation items the pipeline was tuned on.
    vmask = holdout(train, 1, p.min_user_items, carve_by_time, p.seed)
    # Peers learn from what says "more like this": typed data's dislikes are no interactions
    # to them (as any user of EASE would drop them); untyped data is unchanged.
    f_ev, v_ev = train.take(~vmask).positive(), train.take(vmask)
    extra, tuning = {}, {}
    skipped = {name: f"{name} generator skipped: {why}"
               for name, why in trained.models.skipped.items()}
    t0 = time.perf_counter()
    # The peer gets its own, wider grid (peers.DEFAULT_ALS_GRID), not the pipeline's.
    best_als, tuning["peer_als"] = peers.tune_als(
        f_ev, v_ev, n_users, n_items, peer_als_grid, seed=p.seed)
    matrix = peers.interaction_matrix(train.positive(), n_users, n_items)
    als_model = AlsModel(**best_als, seed=p.seed).fit(matrix)
    fit_s["peer_als"] = time.perf_counter() - t0
    als_rec = peers.als_recommender(als_model)
    extra["peer_als"] = lambda user, banned: als_rec(user, k, banned)[0]
    reason = peers.skipped(n_items)
    if reason is None:
        t0 = time.perf_counter()
        lam, tuning["peer_ease"] = peers.tune_ease(f_ev, v_ev, n_users, n_items)
        ease = peers.Ease().fit(matrix, lam)
        fit_s["peer_ease"] = time.perf_counter() - t0
        extra["peer_ease"] = lambda user, banned: ease.recommend(user, k, banned)[0]
    else:
        skipped["peer_ease"] = reason
        logger.warning(reason)

    pipeline = RankingPipeline(trained.ranker, trained.stats, trained.ranking_config)
    per_user: dict[str, np.ndarray] = {}
    results = evaluate(trained.models, trained.stats, pipeline, test, k, progress, extra,
                       per_user=per_user)
    rows = []
    for name in (*HEAD_ROWS, *trained.models.generators, *TAIL_ROWS):
        if name in results:
            rows.append({"model": name, **results[name],
                         "fit_s": round(fit_s.get(name, 0.0), 2),
                         "description": describe(name, registry)})
    params = asdict(trained.params)
    report = {
        "dataset": ds.name, "protocol": protocol, "k": k,
        "users": int(len(np.unique(test.users))), "items": n_items,
        "interactions": int(len(ev)), "train_interactions": int(len(train)),
        "has_timestamps": ds.has_timestamps,
        "rows": rows, "skipped": skipped,
        "chosen": {"generators": params["generators"],
                   **{key: params[key] for key in ("max_candidates", "ranker_num_leaves",
                                                   "diversity", "mmr_lambda", "mmr_top_n")}},
        "peers_chosen": {"peer_als": best_als,
                         "ease_lambda": None if reason else lam},
        "tuning": {**trained.tuning, **tuning},
        "generators": list(trained.models.generators),
        # Registered generators this run left out on purpose (evaluate --without), and the
        # pipeline's NDCG per test user (sorted by user index): two runs on one split that
        # differ by a generator are compared user by user (quality_doc.generator_on_off).
        "generators_off": [n for n in default_registry().names if n not in registry]
        + ([EVENTS] if ignore_events and ds.event_codes is not None else []),
        # how much each event type counted (typed data; tuned on validation)
        "event_weights": trained.params.event_weights,
        "per_user_ndcg": {"pipeline": [round(float(x), 6) for x in per_user["pipeline"]]},
        # ILD is measured in this space: what items are (content) when the catalog says,
        # else who consumes them (ALS).
        "diversity_space": trained.stats.diversity_space,
    }
    if about_users.attributes is not None:
        report["cold_start"] = evaluate_cold_start(ev, users, catalog, about_users,
                                                   trained.params, registry)
    if with_ablation:
        report["ablation"] = ablation(trained, trained.params)
        report["candidate_ablation"] = candidate_ablation(trained.models, test, progress)
    return report


COLUMNS = ("recall@10", "ndcg@10", "map@10", "hr@10", "coverage", "ild", "novelty", "fit_s")


def format_leaderboard(report: dict) -> str:
    head = (f"{report['dataset']} · {report['protocol']} · k={report['k']} · "
            f"{report['users']} users · {report['items']} items")
    lines = [head, f"{'model':<20}" + "".join(f"{c:>11}" for c in COLUMNS)]
    for row in report["rows"]:
        cells = []
        for c in COLUMNS:
            v = row.get(c)
            cells.append(f"{'-':>11}" if v is None else f"{v:>11.4f}" if c != "fit_s"
                         else f"{v:>11.1f}")
        lines.append(f"{row['model']:<20}" + "".join(cells))
    union = next((r for r in report["rows"] if r["model"] == UNION), None)
    if union:
        lines.append(f"candidate recall@{union['candidates']}: {union['recall@candidates']:.4f}")
    for row in report.get("candidate_ablation", [])[1:]:
        lines.append(f"  without {row['removed']:<12} {row['recall']:.4f} ({row['delta']:+.4f}, "
                     "the others fill its share)")
    cold = report.get("cold_start")
    if cold:
        metric = f"ndcg@{cold['k']}"
        lines.append(f"cold start ({cold['users']} users held out entirely, served from "
                     f"{', '.join(cold['attributes'])} alone), {metric}: "
                     + ", ".join(f"{r['model']} {r[metric]:.4f}" for r in cold["rows"]))
    for why in report.get("skipped", {}).values():
        lines.append(why)
    return "\n".join(lines)
