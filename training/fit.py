"""`shortlist-train fit`: fit every model, evaluate on held-out items, publish a version.

Three fits, each on strictly earlier data than what it is judged on:
  1. generators on each user's training events minus their latest ``label_fraction``;
     the ranker learns to find those latest events among the generators' candidates;
  2. generators on all training events (everything but each user's last item), scored with
     the ranker on that last item: the headline metrics;
  3. generators on everything, published with the ranker for serving.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from shortlist.common.artifacts import new_version, publish
from shortlist.common.catalog import ItemCatalog
from tqdm import tqdm

from ranking.bundle import RankingModels
from ranking.features import FEATURE_NAMES, build_features
from ranking.pipeline import RankingConfig, RankingPipeline
from ranking.ranker import LambdaRanker
from retrieval.bundle import RetrievalModels
from training.datasets import load
from training.evaluation import evaluate
from training.models import fit_content, fit_models
from training.offline import candidates_for, to_ranking_input
from training.params import FitParams
from training.split import Events, encode, holdout_last

logger = logging.getLogger(__name__)


class FitError(Exception):
    """The data cannot support a model (e.g. no user with enough history for the ranker)."""


def ranker_examples(models: RetrievalModels, stats, labels: Events, max_users: int, seed: int,
                    progress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features, 0/1 labels, group sizes and user of each group, for users with a hit."""
    target: dict[int, set[int]] = {}
    for u, i in zip(labels.users.tolist(), labels.items.tolist(), strict=True):
        target.setdefault(u, set()).add(i)
    users = np.array(sorted(target), dtype=np.int64)
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    gen = models.generator()
    xs, ys, groups, group_users = [], [], [], []
    for user in tqdm(users.tolist(), desc="ranker examples", unit="user", disable=not progress):
        cands = candidates_for(models, gen, user)
        y = np.isin(cands.items, list(target[user])).astype(np.float32)
        if y.sum() == 0 or len(y) < 2:
            continue  # no positive among candidates: nothing for LambdaRank to learn
        xs.append(build_features(to_ranking_input(cands), stats))
        ys.append(y)
        groups.append(len(y))
        group_users.append(user)
    if not xs:
        raise FitError("no user has a held-out item among the candidates: too little data "
                       "to train the ranker")
    return np.vstack(xs), np.concatenate(ys), np.asarray(groups), np.asarray(group_users)


def train_ranker(x, y, groups, p: FitParams) -> LambdaRanker:
    """Train with early stopping on a seeded 10% of the users."""
    rng = np.random.default_rng(p.seed)
    is_valid = rng.random(len(groups)) < 0.1 if len(groups) >= 20 else np.zeros(len(groups), bool)
    row_group = np.repeat(np.arange(len(groups)), groups)
    vrows = is_valid[row_group]
    valid = (x[vrows], y[vrows], groups[is_valid]) if is_valid.any() else None
    params = {"learning_rate": p.ranker_learning_rate, "num_leaves": p.ranker_num_leaves,
              "seed": p.seed}
    return LambdaRanker().fit(x[~vrows], y[~vrows], groups[~is_valid], FEATURE_NAMES, valid,
                              params, p.ranker_rounds)


def fit(dataset: str, out: Path, p: FitParams | None = None, progress: bool = True) -> Path:
    """Fit, evaluate and publish; returns the new version directory."""
    p = p or FitParams()
    t_start = time.time()
    ds = load(dataset)
    catalog = ItemCatalog(ds.items.item_ids, ds.items.titles, ds.items.categories)
    users, ev = encode(ds, catalog.vocab)
    stages = tqdm(total=5, desc="fit", unit="stage", disable=not progress)

    stages.set_postfix_str("content")
    content = fit_content(ds.items, p)
    stages.update()

    test_mask = holdout_last(ev, 1, p.min_user_items)
    train_ev, test_ev = ev.take(~test_mask), ev.take(test_mask)
    label_mask = holdout_last(train_ev, p.label_fraction, p.min_user_items)

    stages.set_postfix_str("ranker")
    gen_models, gen_stats = fit_models(train_ev.take(~label_mask), users, catalog, content, p)
    x, y, groups, _ = ranker_examples(gen_models, gen_stats, train_ev.take(label_mask),
                                      p.max_ranker_users, p.seed, progress)
    ranker = train_ranker(x, y, groups, p)
    stages.update()

    stages.set_postfix_str("evaluate")
    ranking_config = RankingConfig(mmr_lambda=p.mmr_lambda, mmr_top_n=p.mmr_top_n)
    eval_models, eval_stats = fit_models(train_ev, users, catalog, content, p)
    metrics = evaluate(eval_models, eval_stats,
                       RankingPipeline(ranker, eval_stats, ranking_config), test_ev, 10,
                       progress)
    stages.update()

    stages.set_postfix_str("final models")
    final_models, final_stats = fit_models(ev, users, catalog, content, p)
    stages.update()

    stages.set_postfix_str("publish")
    manifest = {
        "dataset": {"name": ds.name, "fingerprint": ds.fingerprint,
                    "interactions": int(len(ev)), "users": len(users), "items": len(catalog),
                    "has_timestamps": ds.has_timestamps},
        "parameters": asdict(p),
        "generators": [g for g, m in (("als", final_models.als),
                                      ("content", final_models.content)) if m is not None]
        + ["trending"],
        "ranker": {"features": FEATURE_NAMES, "examples": int(len(y)),
                   "groups": int(len(groups)), "trees": ranker.booster.num_trees(),
                   "importance_gain": ranker.feature_importance()},
        "metrics": {"protocol": "leave-last-out (each user's latest item, users with >= "
                                f"{p.min_user_items} items)", "k": 10, "models": metrics},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    version = new_version(ds.fingerprint)
    with publish(out, version, manifest) as staging:
        final_models.save(staging)
        RankingModels(catalog, ranker, final_stats, ranking_config).save(staging)
        manifest["fit_seconds"] = round(time.time() - t_start, 1)
    stages.update()
    stages.close()
    return out / version
