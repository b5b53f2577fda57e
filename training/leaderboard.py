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
from shortlist.ranking.features import FEATURE_NAMES
from shortlist.ranking.pipeline import RankingConfig, RankingPipeline
from shortlist.retrieval.als import AlsModel
from shortlist.training import peers
from shortlist.training.datasets import load
from shortlist.training.evaluation import UNION, evaluate
from shortlist.training.fit import TuningGrid, score_examples, train_pipeline, train_ranker
from shortlist.training.models import fit_content
from shortlist.training.params import FitParams
from shortlist.training.protocol import PROTOCOLS, export_split, leave_last_out
from shortlist.training.split import encode, holdout_last

logger = logging.getLogger(__name__)

ROW_ORDER = ("random", "popularity", "trending", "content", "als", UNION,
             "implicit_als_tuned", "ease", "pipeline", "pipeline_mmr")
DESCRIPTIONS = {
    "random": "uniformly random unseen items",
    "popularity": "most-interacted items in the training data",
    "trending": "generator: time-decayed popularity",
    "content": "generator: TF-IDF+SVD taste vector over the content HNSW index",
    "als": "generator: implicit ALS over the MIPS HNSW index",
    UNION: "merged candidates of all generators, retrieval (RRF) order",
    "implicit_als_tuned": "peer: implicit ALS tuned on validation, exact scoring",
    "ease": "peer: EASE (Steck 2019), lambda tuned on validation",
    "pipeline": "Shortlist: generators + LightGBM LambdaRank",
    "pipeline_mmr": "Shortlist: pipeline + MMR at the chosen lambda",
}

# Feature groups for the ablation: each is blanked and the ranker retrained without it.
FEATURE_GROUPS = {
    "generator scores and ranks": [f for f in FEATURE_NAMES if f.endswith(("_gen_score",
                                                                           "_gen_rank"))]
    + ["n_sources"],
    "retrieval order (RRF)": ["retrieval_rank", "retrieval_score"],
    "ALS dot product": ["als_score"],
    "content similarity to taste": ["taste_score"],
    "content similarity to recent items": ["recent_sim", "recent5_sim_max"],
    "ALS similarity to recent items": ["als_recent_sim", "als_recent5_sim_max"],
    "popularity": ["popularity"],
    "trending score": ["trending"],
    "popularity at the user's time": ["pop_at_user_time"],
    "item age": ["item_age_days", "item_age_at_user_time"],
    "history length": ["history_length"],
    "genre affinity": ["genre_affinity"],
}


def ablation(trained, p: FitParams) -> list[dict]:
    """Validation NDCG@10 with each feature group removed (ranker retrained without it)."""
    pipe = RankingPipeline(trained.ranker, trained.valid_stats, RankingConfig(1.0, p.mmr_top_n))
    base, _ = score_examples(trained.ranker, pipe, trained.valid_examples, 1.0)
    rows = [{"removed": "(none)", "ndcg@10": base, "delta": 0.0}]
    for group, names in FEATURE_GROUPS.items():
        cols = [FEATURE_NAMES.index(n) for n in names]
        ranker = train_ranker(trained.train_examples, trained.valid_examples, p,
                              p.ranker_num_leaves, cols)
        ndcg, _ = score_examples(ranker, pipe, trained.valid_examples, 1.0, columns=cols)
        rows.append({"removed": group, "features": names, "ndcg@10": ndcg,
                     "delta": ndcg - base})
    return rows


def run(dataset: str, protocol: str = "leave-last-out", export_dir: Path | None = None,
        k: int = 10, progress: bool = True, p: FitParams | None = None,
        grid: TuningGrid | None = None, with_ablation: bool = True,
        peer_als_grid: list[dict] | None = None) -> dict:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    p = p or FitParams()
    grid = grid if grid is not None else (TuningGrid() if p.tune else None)
    ds = load(dataset)
    catalog = ItemCatalog(ds.items.item_ids, ds.items.titles, ds.items.categories,
                          ds.items.texts)
    users, ev = encode(ds, catalog.vocab)
    test_mask = leave_last_out(ev, ds.has_timestamps, p.min_user_items, p.seed)
    train, test = ev.take(~test_mask), ev.take(test_mask)
    if export_dir is not None:
        export_split(export_dir, users, catalog.vocab, train, test)
    n_users, n_items = len(users), len(catalog)

    fit_s: dict[str, float] = {}
    t0 = time.perf_counter()
    content = fit_content(ds.items, p)
    content_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    trained = train_pipeline(train, users, catalog, content, p, grid, progress)
    fit_s["pipeline"] = fit_s["pipeline_mmr"] = content_s + time.perf_counter() - t0
    fit_s.update(trained.models.fit_seconds)
    if "content" in fit_s:
        fit_s["content"] += content_s
    fit_s[UNION] = sum(trained.models.fit_seconds.values()) + content_s
    fit_s["random"] = 0.0
    fit_s["popularity"] = fit_s.get("trending", 0.0)

    # Peers: tuned on the same validation items the pipeline was tuned on.
    vmask = holdout_last(train, 1, p.min_user_items)
    f_ev, v_ev = train.take(~vmask), train.take(vmask)
    extra, tuning, skipped = {}, {}, {}
    t0 = time.perf_counter()
    # The peer gets its own, wider grid (peers.DEFAULT_ALS_GRID), not the pipeline's.
    best_als, tuning["implicit_als_tuned"] = peers.tune_als(
        f_ev, v_ev, n_users, n_items, peer_als_grid, seed=p.seed)
    matrix = peers.interaction_matrix(train, n_users, n_items)
    als_model = AlsModel(**best_als, seed=p.seed).fit(matrix)
    fit_s["implicit_als_tuned"] = time.perf_counter() - t0
    als_rec = peers.als_recommender(als_model)
    extra["implicit_als_tuned"] = lambda user, banned: als_rec(user, k, banned)[0]
    reason = peers.skipped(n_items)
    if reason is None:
        t0 = time.perf_counter()
        lam, tuning["ease"] = peers.tune_ease(f_ev, v_ev, n_users, n_items)
        ease = peers.Ease().fit(matrix, lam)
        fit_s["ease"] = time.perf_counter() - t0
        extra["ease"] = lambda user, banned: ease.recommend(user, k, banned)[0]
    else:
        skipped["ease"] = reason
        logger.warning(reason)

    pipeline = RankingPipeline(trained.ranker, trained.stats, trained.ranking_config)
    results = evaluate(trained.models, trained.stats, pipeline, test, k, progress, extra)
    rows = []
    for name in ROW_ORDER:
        if name in results:
            rows.append({"model": name, **results[name],
                         "fit_s": round(fit_s.get(name, 0.0), 2),
                         "description": DESCRIPTIONS[name]})
    params = asdict(trained.params)
    report = {
        "dataset": ds.name, "protocol": protocol, "k": k,
        "users": int(len(np.unique(test.users))), "items": n_items,
        "interactions": int(len(ev)), "train_interactions": int(len(train)),
        "has_timestamps": ds.has_timestamps,
        "rows": rows, "skipped": skipped,
        "chosen": {key: params[key] for key in (
            "als_factors", "als_regularization", "als_alpha", "taste_half_life_days",
            "trending_half_life_days", "als_candidates", "content_candidates",
            "trending_candidates", "max_candidates", "ranker_num_leaves", "mmr_lambda",
            "mmr_top_n")},
        "peers_chosen": {"implicit_als_tuned": best_als,
                         "ease_lambda": None if reason else lam},
        "tuning": {**trained.tuning, **tuning},
        "generators": [g for g, m in (("als", trained.models.als),
                                      ("content", trained.models.content)) if m is not None]
        + ["trending"],
    }
    if with_ablation:
        report["ablation"] = ablation(trained, trained.params)
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
    for why in report.get("skipped", {}).values():
        lines.append(why)
    return "\n".join(lines)
