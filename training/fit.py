"""Train the whole pipeline with hyperparameters chosen on validation data, and publish it.

``train_pipeline`` is shared by ``fit`` (on all data) and ``evaluate`` (on the training part of
a split), so the leaderboard measures exactly what ``fit`` publishes. On its input events it
carves, per user with enough history:

  V  the latest event: validation, used to choose every hyperparameter;
  L  the latest ``label_fraction`` of the rest: the ranker's labels;
  G  everything before L: what the generators see when producing the ranker's examples.

Generators fitted on G propose candidates, and the ranker learns to find L among them. The
same ranker is then judged on generators fitted on F = G + L finding V. Finally the generators
are refitted on everything with the chosen values.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from shortlist.common.artifacts import new_version, publish
from shortlist.common.catalog import ItemCatalog
from shortlist.common.vocab import Vocabulary
from shortlist.ranking.bundle import RankingModels
from shortlist.ranking.features import FEATURE_NAMES, ItemStats, build_features
from shortlist.ranking.pipeline import RankingConfig, RankingPipeline
from shortlist.ranking.ranker import LambdaRanker
from shortlist.retrieval.bundle import RetrievalModels, banned_mask
from shortlist.retrieval.candidates import CandidateSet
from shortlist.training.datasets import load
from shortlist.training.evaluation import evaluate
from shortlist.training.eventlog_data import extend_dataset
from shortlist.training.metrics import intra_list_distance, ndcg_at_k, recall_at_k
from shortlist.training.models import fit_content, fit_models
from shortlist.training.offline import candidates_for, to_ranking_input
from shortlist.training.params import FitParams
from shortlist.training.split import Events, encode, holdout_last

logger = logging.getLogger(__name__)


class FitError(Exception):
    """The data cannot support a model (e.g. no user with enough history for the ranker)."""


@dataclass
class TuningGrid:
    """Values tried on validation; the best (or, for MMR, the most diverse affordable) wins."""

    als: tuple[dict, ...] = tuple(
        {"factors": f, "regularization": r, "alpha": a}
        for f in (64, 128, 256) for r in (0.1, 1.0, 10.0) for a in (1.0, 5.0)
    )
    taste_half_life_days: tuple[float, ...] = (30.0, 180.0, 730.0, 0.0)
    trending_half_life_days: tuple[float, ...] = (3.0, 30.0, 180.0)
    candidates: tuple[tuple[int, int, int], ...] = ((100, 50, 25), (200, 100, 50),
                                                    (400, 100, 50))
    ranker_num_leaves: tuple[int, ...] = (15, 31, 63)
    mmr_lambda: tuple[float, ...] = (1.0, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5)
    mmr_top_n: tuple[int, ...] = (50, 100)
    # MMR: among settings whose validation NDCG@10 is within mmr_max_ndcg_loss of plain
    # ranking, the cheapest one that raises intra-list diversity by mmr_min_ild_gain; if none
    # does, the most diverse affordable one.
    mmr_max_ndcg_loss: float = 0.02
    mmr_min_ild_gain: float = 0.10


@dataclass
class Examples:
    """One user per entry: candidates, their features and which are held-out items."""

    users: list[int] = field(default_factory=list)
    cands: list[CandidateSet] = field(default_factory=list)
    feats: list[np.ndarray] = field(default_factory=list)
    relevant: list[set[int]] = field(default_factory=list)

    def xy(self, columns: list[int] | None = None):
        """LightGBM inputs for users with at least one positive among their candidates."""
        xs, ys, groups = [], [], []
        for c, x, rel in zip(self.cands, self.feats, self.relevant, strict=True):
            y = np.isin(c.items, list(rel)).astype(np.float32)
            if y.sum() == 0 or len(y) < 2:
                continue
            xs.append(mask_columns(x, columns))
            ys.append(y)
            groups.append(len(y))
        if not xs:
            return None
        return np.vstack(xs), np.concatenate(ys), np.asarray(groups)


def mask_columns(x: np.ndarray, columns: list[int] | None) -> np.ndarray:
    """Features with ``columns`` blanked to NaN: the ablation of a feature group."""
    if not columns:
        return x
    x = x.copy()
    x[:, columns] = np.nan
    return x


@dataclass
class Trained:
    models: RetrievalModels
    stats: ItemStats
    ranker: LambdaRanker
    ranking_config: RankingConfig
    params: FitParams
    tuning: dict
    validation: dict
    train_examples: Examples
    valid_examples: Examples
    valid_stats: ItemStats
    valid_models: RetrievalModels
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each phase


def build_examples(models: RetrievalModels, stats: ItemStats, labels: Events,
                   max_users: int, seed: int, progress: bool, desc: str) -> Examples:
    target: dict[int, set[int]] = {}
    for u, i in zip(labels.users.tolist(), labels.items.tolist(), strict=True):
        target.setdefault(u, set()).add(i)
    users = np.array(sorted(target), dtype=np.int64)
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    gen = models.generator()
    ex = Examples()
    for user in tqdm(users.tolist(), desc=desc, unit="user", disable=not progress,
                     leave=False):
        cands = candidates_for(models, gen, user)
        ex.users.append(user)
        ex.cands.append(cands)
        ex.feats.append(build_features(to_ranking_input(cands), stats))
        ex.relevant.append(target[user])
    return ex


def score_examples(ranker: LambdaRanker, pipeline: RankingPipeline, ex: Examples, lam: float,
                   k: int = 10, columns: list[int] | None = None) -> tuple[float, float]:
    """Mean NDCG@k and intra-list distance of the pipeline over every user in ``ex``."""
    ndcgs, ilds = [], []
    for c, x, rel in zip(ex.cands, ex.feats, ex.relevant, strict=True):
        if len(c) == 0:
            ndcgs.append(0.0)
            continue
        scores = ranker.predict(mask_columns(x, columns))
        pos = pipeline.diversify(c.items, scores, k, lam)
        ndcgs.append(ndcg_at_k(c.items[pos], rel, k))
        ilds.append(intra_list_distance(pipeline.stats.vectors[c.items[pos]]))
    return float(np.mean(ndcgs)) if ndcgs else 0.0, float(np.mean(ilds)) if ilds else 0.0


def train_ranker(ex: Examples, valid: Examples, p: FitParams, num_leaves: int,
                 columns: list[int] | None = None) -> LambdaRanker:
    train = ex.xy(columns)
    if train is None:
        raise FitError("no user has a held-out item among the candidates: too little data "
                       "to train the ranker")
    params = {"learning_rate": p.ranker_learning_rate, "num_leaves": num_leaves,
              "seed": p.seed, "min_data_in_leaf": 20}
    return LambdaRanker().fit(*train, FEATURE_NAMES, valid.xy(columns), params,
                              p.ranker_rounds)


def _generator_recall(models: RetrievalModels, which: str, valid: Events, k: int,
                      users: np.ndarray) -> float:
    """Recall@k of one generator alone on the validation items (what a generator is for)."""
    gen = models.generator()
    target: dict[int, set[int]] = {}
    for u, i in zip(valid.users.tolist(), valid.items.tolist(), strict=True):
        target.setdefault(u, set()).add(i)
    total = 0.0
    for user in users.tolist():
        items, stamps, _ = models.history.events(user)
        banned = banned_mask(len(models.catalog), items)
        if which == "content":
            taste = gen.taste_vector(items, stamps)
            if taste is None:
                continue
            top = gen.search(models.content_index, models.content.vectors, taste, k, banned)[0]
        else:
            top = models.trending.top(k, banned)[0]
        total += recall_at_k(top, target.get(user, set()), k)
    return total / max(1, len(users))


def _sample_users(ev: Events, max_users: int, seed: int) -> np.ndarray:
    users = np.unique(ev.users)
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    return users


def tune_generators(f_ev: Events, v_ev: Events, users: Vocabulary, catalog: ItemCatalog,
                    content, p: FitParams, grid: TuningGrid, progress: bool) -> dict:
    """ALS on NDCG@10, half-lives on recall at the generator's candidate count; mutates p."""
    from shortlist.training.peers import tune_als

    tables: dict = {}
    als_grid = [{**g, "iterations": p.als_iterations} for g in grid.als]
    best, table = tune_als(f_ev, v_ev, len(users), len(catalog), als_grid, seed=p.seed)
    p.als_factors, p.als_regularization = best["factors"], best["regularization"]
    p.als_alpha = best["alpha"]
    tables["als"] = table

    sample = _sample_users(v_ev, p.max_ranker_users, p.seed)
    models, _ = fit_models(f_ev, users, catalog, content, p, progress, "tuning models")
    if content is not None:
        rows = []
        for hl in grid.taste_half_life_days:
            models.config.taste_half_life_days = hl
            rows.append({"taste_half_life_days": hl, f"recall@{p.content_candidates}":
                         _generator_recall(models, "content", v_ev, p.content_candidates,
                                           sample)})
        best_row = max(rows, key=lambda r: r[f"recall@{p.content_candidates}"])
        p.taste_half_life_days = best_row["taste_half_life_days"]
        tables["taste_half_life_days"] = rows
    rows = []
    for hl in grid.trending_half_life_days:
        models.trending.half_life_days = hl
        models.trending.fit(f_ev.items, f_ev.timestamps, len(catalog), models.now)
        rows.append({"trending_half_life_days": hl, f"recall@{p.trending_candidates}":
                     _generator_recall(models, "trending", v_ev, p.trending_candidates,
                                       sample)})
    p.trending_half_life_days = max(
        rows, key=lambda r: r[f"recall@{p.trending_candidates}"])["trending_half_life_days"]
    tables["trending_half_life_days"] = rows
    return tables


def tune_mmr(ranker: LambdaRanker, stats: ItemStats, valid_ex: Examples, p: FitParams,
             grid: TuningGrid | None) -> list[dict]:
    """Try MMR settings on validation; sets p.mmr_lambda and p.mmr_top_n (see TuningGrid)."""
    lams = grid.mmr_lambda if grid is not None else (1.0, p.mmr_lambda)
    top_ns = grid.mmr_top_n if grid is not None else (p.mmr_top_n,)
    rows = []
    for top_n in top_ns:
        pipe = RankingPipeline(ranker, stats, RankingConfig(1.0, top_n))
        for lam in lams:
            ndcg, ild = score_examples(ranker, pipe, valid_ex, lam)
            rows.append({"mmr_lambda": lam, "mmr_top_n": top_n, "ndcg@10": ndcg, "ild": ild})
    base = next(r for r in rows if r["mmr_lambda"] == 1.0)
    for r in rows:
        r["ndcg_change"] = r["ndcg@10"] / base["ndcg@10"] - 1 if base["ndcg@10"] else 0.0
        r["ild_change"] = r["ild"] / base["ild"] - 1 if base["ild"] else 0.0
    if grid is not None:
        affordable = [r for r in rows if r["ndcg_change"] >= -grid.mmr_max_ndcg_loss]
        enough = [r for r in affordable if r["ild_change"] >= grid.mmr_min_ild_gain]
        best = (max(enough, key=lambda r: (r["ndcg_change"], r["mmr_lambda"])) if enough
                else max(affordable, key=lambda r: (r["ild_change"], r["mmr_lambda"])))
        p.mmr_lambda, p.mmr_top_n = best["mmr_lambda"], best["mmr_top_n"]
    return rows


def _set_counts(p: FitParams, counts: tuple[int, int, int], *models: RetrievalModels) -> None:
    p.als_candidates, p.content_candidates, p.trending_candidates = counts
    p.max_candidates = sum(counts)
    for m in models:
        m.config = dataclasses.replace(
            m.config, als_candidates=counts[0], content_candidates=counts[1],
            trending_candidates=counts[2], max_candidates=sum(counts),
            taste_half_life_days=p.taste_half_life_days)


class PhaseClock:
    """Wall seconds per named phase (summed when a phase repeats), for the manifest."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def skip(self) -> None:
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._last, 2)
        self._last = now


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def train_pipeline(ev: Events, users: Vocabulary, catalog: ItemCatalog, content,
                   p: FitParams, grid: TuningGrid | None, progress: bool = True) -> Trained:
    p = dataclasses.replace(p)
    vmask = holdout_last(ev, 1, p.min_user_items)
    if not vmask.any():
        raise FitError(f"no user has {p.min_user_items} or more items: too little data to "
                       "validate and train the ranker")
    f_ev, v_ev = ev.take(~vmask), ev.take(vmask)
    lmask = holdout_last(f_ev, p.label_fraction, p.min_user_items - 1)
    g_ev, l_ev = f_ev.take(~lmask), f_ev.take(lmask)
    tuning: dict = {}
    steps = tqdm(total=4, desc="train", unit="step", disable=not progress, leave=False)
    clock = PhaseClock()

    steps.set_postfix_str("tune generators")
    if grid is not None:
        tuning.update(tune_generators(f_ev, v_ev, users, catalog, content, p, grid, progress))
    clock.lap("tune_generators")
    steps.update()

    steps.set_postfix_str("ranker")
    models_g, stats_g = fit_models(g_ev, users, catalog, content, p, progress,
                                   "models for ranker labels")
    clock.lap("models_for_labels")
    models_f, stats_f = fit_models(f_ev, users, catalog, content, p, progress,
                                   "models for validation", previous=models_g)
    clock.lap("models_for_validation")
    count_grid = grid.candidates if grid is not None else (
        (p.als_candidates, p.content_candidates, p.trending_candidates),)
    leaves_grid = grid.ranker_num_leaves if grid is not None else (p.ranker_num_leaves,)
    rows, best = [], None
    for counts in count_grid:
        _set_counts(p, counts, models_g, models_f)
        train_ex = build_examples(models_g, stats_g, l_ev, p.max_ranker_users, p.seed,
                                  progress, "ranker examples")
        valid_ex = build_examples(models_f, stats_f, v_ev, p.max_ranker_users, p.seed,
                                  progress, "validation examples")
        clock.lap("ranker_examples")
        for leaves in leaves_grid:
            ranker = train_ranker(train_ex, valid_ex, p, leaves)
            pipe = RankingPipeline(ranker, stats_f, RankingConfig(1.0, p.mmr_top_n))
            ndcg, _ = score_examples(ranker, pipe, valid_ex, 1.0)
            rows.append({"candidates": list(counts), "num_leaves": leaves, "ndcg@10": ndcg,
                         "trees": ranker.booster.num_trees()})
            if best is None or ndcg > best[0]:
                best = (ndcg, counts, leaves, ranker, train_ex, valid_ex)
            clock.lap("ranker_training")
    _, counts, leaves, ranker, train_ex, valid_ex = best
    _set_counts(p, counts, models_g, models_f)
    p.ranker_num_leaves = leaves
    tuning["ranker"] = rows
    steps.update()

    steps.set_postfix_str("mmr")
    tuning["mmr"] = tune_mmr(ranker, stats_f, valid_ex, p, grid)
    clock.lap("tune_mmr")
    ranking_config = RankingConfig(p.mmr_lambda, p.mmr_top_n)
    eval_users = _sample_users(v_ev, p.max_eval_users, p.seed)
    validation = evaluate(models_f, stats_f, RankingPipeline(ranker, stats_f, ranking_config),
                          v_ev.take(np.isin(v_ev.users, eval_users)), 10, progress)
    clock.lap("validation")
    steps.update()

    steps.set_postfix_str("final models")
    models, stats = fit_models(ev, users, catalog, content, p, progress, "final models",
                               previous=models_f)
    clock.lap("final_models")
    steps.update()
    steps.close()
    return Trained(models, stats, ranker, ranking_config, p, tuning, validation, train_ex,
                   valid_ex, stats_f, models_f, clock.seconds)


def fit(dataset: str, out: Path, p: FitParams | None = None, progress: bool = True,
        grid: TuningGrid | None = None, events: Path | None = None) -> Path:
    """Fit, validate and publish; returns the new version directory.

    ``grid`` defaults to the full ``TuningGrid``; pass ``p.tune = False`` to keep ``p`` as is.
    ``events``: a retrieval event log folded into the data (``training.eventlog_data``); the
    manifest's ``events`` block says through which seqs, so the server replays only newer ones.
    """
    p = p or FitParams()
    if grid is None and p.tune:
        grid = TuningGrid()
    t_start = time.time()
    clock = PhaseClock()
    ds = load(dataset)
    if events is not None:
        ds = extend_dataset(ds, Path(events))
    clock.lap("load")
    catalog = ItemCatalog(ds.items.item_ids, ds.items.titles, ds.items.categories,
                          ds.items.texts)
    users, ev = encode(ds, catalog.vocab)
    content = fit_content(ds.items, p)
    clock.lap("encode_and_content")
    trained = train_pipeline(ev, users, catalog, content, p, grid, progress)
    clock.skip()  # train_pipeline timed its own phases
    final = trained.models
    manifest = {
        "dataset": {"name": ds.name, "fingerprint": ds.fingerprint,
                    "interactions": int(len(ev)), "users": len(users), "items": len(catalog),
                    "has_timestamps": ds.has_timestamps},
        "parameters": asdict(trained.params),
        "tuning": trained.tuning,
        "generators": [g for g, m in (("als", final.als), ("content", final.content))
                       if m is not None] + ["trending"],
        "ranker": {"features": FEATURE_NAMES, "trees": trained.ranker.booster.num_trees(),
                   "importance_gain": trained.ranker.feature_importance()},
        "metrics": {"protocol": "validation: each user's latest item, users with >= "
                                f"{p.min_user_items} items; hyperparameters were chosen on "
                                "it, so it is optimistic (see shortlist-train evaluate)",
                    "k": 10, "models": trained.validation},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if events is not None:
        manifest["events"] = ds.extra["events"]
    version = new_version(ds.fingerprint)
    with publish(out, version, manifest) as staging:
        final.save(staging)
        RankingModels(catalog, trained.ranker, trained.stats, trained.ranking_config).save(
            staging)
        clock.lap("publish")
        manifest["fit_seconds"] = round(time.time() - t_start, 1)
        manifest["fit_phase_seconds"] = {**clock.seconds, **trained.seconds}
        manifest["fit_peak_rss_bytes"] = peak_rss_bytes()
    return out / version
