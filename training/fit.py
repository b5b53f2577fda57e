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
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from shortlist.common.artifacts import new_version, publish
from shortlist.common.attributes import UserAttributes, UserData
from shortlist.common.candidates import Candidates
from shortlist.common.catalog import ItemCatalog
from shortlist.common.threads import map_in_order
from shortlist.common.vocab import Vocabulary
from shortlist.ranking.bundle import RankingModels
from shortlist.ranking.features import FeatureSpec, ItemStats, build_features
from shortlist.ranking.pipeline import (
    DIVERSITY_METHODS,
    GENERATOR,
    RANKER,
    RETRIEVAL,
    RankingConfig,
    RankingPipeline,
    configuration_name,
)
from shortlist.ranking.ranker import LambdaRanker
from shortlist.retrieval.bundle import RetrievalModels, banned_mask
from shortlist.retrieval.generators import (
    Generator,
    Registry,
    config_of,
    default_registry,
    fit_each_or_skip,
)
from shortlist.training.datasets import VARIANT_SEP, load, load_profiles, resolve_path
from shortlist.training.drift import drift_references, reference_users
from shortlist.training.evaluation import UNION, evaluate
from shortlist.training.event_weights import tune_event_weights, types_in_use
from shortlist.training.eventlog_data import extend_dataset
from shortlist.training.metrics import intra_list_distance, ndcg_at_k, recall_at_k
from shortlist.training.models import (
    event_types_counted,
    fit_data,
    fit_models,
    release_freed_heap,
)
from shortlist.training.offline import candidates_for
from shortlist.training.params import FitParams
from shortlist.training.split import (
    Events,
    align_user_data,
    encode,
    holdout,
    user_data,
    user_order,
)

logger = logging.getLogger(__name__)


class FitError(Exception):
    """The data cannot support a model (e.g. no user with enough history for the ranker)."""


# Rounds of a generator's tuning search: its grid, then refine_grid's rounds (a bound, so
# that a search that keeps proposing cannot run for ever).
MAX_TUNING_ROUNDS = 6


@dataclass
class TuningGrid:
    """Values tried on validation; the best (or, for MMR, the most diverse affordable) wins."""

    # Config overrides to try per generator name; a generator not named here tries its own
    # ``tuning_grid``, and an empty list tunes nothing.
    generators: dict[str, list[dict]] = field(default_factory=dict)
    # Every generator's candidate count (and the merged maximum) times each of these.
    candidate_scales: tuple[float, ...] = (0.5, 1.0, 2.0)
    ranker_num_leaves: tuple[int, ...] = (15, 31, 63)
    mmr_lambda: tuple[float, ...] = (1.0, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5)
    mmr_top_n: tuple[int, ...] = (50, 100)
    diversity_methods: tuple[str, ...] = DIVERSITY_METHODS
    # Diversity: among settings whose validation NDCG@10 is within mmr_max_ndcg_loss of plain
    # ranking, the cheapest one that raises intra-list diversity by mmr_min_ild_gain; if none
    # does, the most diverse affordable one.
    mmr_max_ndcg_loss: float = 0.02
    mmr_min_ild_gain: float = 0.10

    def variants(self, cls: type[Generator], config) -> list[dict]:
        if cls.name in self.generators:
            return list(self.generators[cls.name])
        return cls.tuning_grid(config)

    def refinements(self, cls: type[Generator], best: dict, tried: list[dict],
                    rounds: int) -> list[dict]:
        """The generator's next round around ``best`` of round ``rounds``; none for a grid
        given here, which is tried exactly as given."""
        if cls.name in self.generators:
            return []
        return cls.refine_grid(best, tried, rounds)


@dataclass
class Examples:
    """One user per entry: candidate items, their features, the user's recent items (for
    calibration) and which items are held out, with their grade (the ranker's label; metrics
    count every held-out item alike).

    Only the items of each ``Candidates`` are kept: the per-generator blocks are read once,
    into the features, and at 20,000 users x 600 candidates they were a gigabyte a set."""

    users: list[int] = field(default_factory=list)
    items: list[np.ndarray] = field(default_factory=list)
    recent: list[np.ndarray] = field(default_factory=list)
    feats: list[np.ndarray] = field(default_factory=list)
    relevant: list[dict[int, int]] = field(default_factory=list)

    def add(self, user: int, cands: Candidates, feats: np.ndarray,
            relevant: dict[int, int]) -> None:
        self.users.append(user)
        self.items.append(cands.items)
        self.recent.append(cands.recent_items)
        self.feats.append(feats)
        self.relevant.append(relevant)

    def split(self, keep: np.ndarray) -> Examples:
        """The users where ``keep`` is set (a mask over ``users``)."""
        rows = np.flatnonzero(keep).tolist()
        return Examples(*([column[r] for r in rows] for column in (
            self.users, self.items, self.recent, self.feats, self.relevant)))

    def xy(self, columns: list[int] | None = None, flat: bool = False):
        """LightGBM inputs for users with at least one positive among their candidates
        (``flat``: every held-out item labelled 1, whatever its grade)."""
        xs, ys, groups = [], [], []
        for items, x, rel in zip(self.items, self.feats, self.relevant, strict=True):
            y = label_of(items, rel)
            if flat:
                y = (y > 0).astype(np.float32)
            if y.sum() == 0 or len(y) < 2:
                continue
            xs.append(mask_columns(x, columns))
            ys.append(y)
            groups.append(len(y))
        if not xs:
            return None
        return np.vstack(xs), np.concatenate(ys), np.asarray(groups)


def label_of(items: np.ndarray, relevant: dict[int, int]) -> np.ndarray:
    """Each candidate's grade in ``relevant`` (0 where it is not held out)."""
    y = np.zeros(len(items), dtype=np.float32)
    if relevant:
        keys = np.fromiter(relevant, dtype=np.int64, count=len(relevant))
        grades = np.fromiter(relevant.values(), dtype=np.float32, count=len(relevant))
        order = np.argsort(keys)
        keys, grades = keys[order], grades[order]
        at = np.minimum(np.searchsorted(keys, items), len(keys) - 1)
        hit = keys[at] == items
        y[hit] = grades[at[hit]]
    return y


def label_grades(labels: Events, next_n: int = 0, grade: int = 1) -> dict[int, dict[int, int]]:
    """Each user's held-out items and their grade: the first ``next_n`` in time ``grade``,
    the rest 1 (``next_n`` 0: all 1)."""
    order = user_order(labels) if next_n > 0 else np.arange(len(labels))
    users, items = labels.users[order], labels.items[order]
    grades = np.ones(len(order), dtype=np.int64)
    if next_n > 0 and len(order):
        first = np.ones(len(order), dtype=bool)
        first[1:] = users[1:] != users[:-1]
        start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
        grades[np.arange(len(order)) - start < next_n] = grade
    target: dict[int, dict[int, int]] = {}
    for u, i, g in zip(users.tolist(), items.tolist(), grades.tolist(), strict=True):
        held = target.setdefault(u, {})
        held[i] = max(held.get(i, 0), g)
    return target


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
    spec: FeatureSpec
    tuning: dict
    validation: dict
    train_examples: Examples | None  # None unless asked for (train_pipeline's keep_examples)
    valid_examples: Examples | None
    valid_stats: ItemStats
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each phase
    peak_rss: dict[str, int] = field(default_factory=dict)  # peak RSS when each phase ended


def build_examples(models: RetrievalModels, stats: ItemStats, labels: Events,
                   spec: FeatureSpec, max_users: int, seed: int, progress: bool,
                   desc: str, next_n: int = 0, grade: int = 1) -> Examples:
    """Candidates and features of up to ``max_users`` users with labels, graded as
    ``label_grades`` says."""
    target = label_grades(labels, next_n, grade)
    users = np.array(sorted(target), dtype=np.int64)
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    source = models.source()

    def one(user: int) -> tuple[Candidates, np.ndarray]:
        cands = candidates_for(models, source, user)
        return cands, build_features(cands, stats, spec)

    ex = Examples()
    ids = users.tolist()
    bar = tqdm(total=len(ids), desc=desc, unit="user", disable=not progress, leave=False)
    # Users are independent, and their HNSW searches release the GIL: FIT_THREADS of them
    # at once (1.4x at 1M users), taken in order, so the examples are the same.
    for user, (cands, feats) in zip(ids, map_in_order(one, ids), strict=True):
        ex.add(user, cands, feats, target[user])
        bar.update()
    bar.close()
    return ex


def ranker_scores(ranker: LambdaRanker, ex: Examples, columns: list[int] | None = None
                  ) -> list[np.ndarray]:
    """The ranker's scores of every user's candidates in ``ex``, predicted in blocks of users:
    one LightGBM call per user cost more in call overhead than in trees."""
    out: list[np.ndarray] = []
    for start in range(0, len(ex.feats), _PREDICT_BLOCK):
        feats = ex.feats[start:start + _PREDICT_BLOCK]
        sizes = [len(x) for x in feats]
        if sum(sizes) == 0:
            out += [np.zeros(0, np.float32) for _ in feats]
            continue
        scores = ranker.predict(mask_columns(np.vstack(feats), columns))
        out += np.split(scores, np.cumsum(sizes)[:-1])
    return out


# Users scored per LightGBM call in ``ranker_scores`` (their features stacked: 1,000 users x
# 600 candidates x 40 features is 96 MB)
_PREDICT_BLOCK = 1000


def score_examples(ranker: LambdaRanker, pipeline: RankingPipeline, ex: Examples, lam: float,
                   k: int = 10, columns: list[int] | None = None,
                   method: str | None = None,
                   scores: list[np.ndarray] | None = None) -> tuple[float, float]:
    """Mean NDCG@k and intra-list distance of the pipeline over every user in ``ex``.

    ``scores``: ``ranker_scores(ranker, ex, columns)`` computed already (diversity tuning
    reorders the same scores dozens of times)."""
    ndcgs, ilds = [], []
    diversity = pipeline.stats.diversity
    if scores is None:
        scores = ranker_scores(ranker, ex, columns)
    for items, s, recent, rel in zip(ex.items, scores, ex.recent, ex.relevant, strict=True):
        if len(items) == 0:
            ndcgs.append(0.0)
            continue
        pos = pipeline.diversify(items, s, k, lam, recent, method)
        ndcgs.append(ndcg_at_k(items[pos], rel, k))
        ilds.append(intra_list_distance(diversity[items[pos]]))
    return float(np.mean(ndcgs)) if ndcgs else 0.0, float(np.mean(ilds)) if ilds else 0.0


def train_ranker(ex: Examples, valid: Examples, p: FitParams, num_leaves: int,
                 spec: FeatureSpec, columns: list[int] | None = None,
                 flat: bool = False) -> LambdaRanker:
    """LightGBM LambdaRank on the label examples, early-stopped on a share of them.

    Early stopping watches ``p.ranker_stop_share`` of the label users, held out of training:
    they have many positives each (a fifth of their history), so the stopping signal is far
    steadier than validation's one item per user, and validation stays untouched for
    choosing between rankers and configurations. 0 stops on validation instead. ``flat``:
    graded labels taken as 1 (``label_grades``).
    """
    stop = valid
    if p.ranker_stop_share > 0 and len(ex.users) >= 20:
        held = np.random.default_rng(p.seed).random(len(ex.users)) < p.ranker_stop_share
        ex, stop = ex.split(~held), ex.split(held)
    train = ex.xy(columns, flat)
    if train is None:
        raise FitError("no user has a held-out item among the candidates: too little data "
                       "to train the ranker")
    params = {"learning_rate": p.ranker_learning_rate, "num_leaves": num_leaves,
              "seed": p.seed, "min_data_in_leaf": 20}
    return LambdaRanker().fit(*train, spec.names, stop.xy(columns, flat), params,
                              p.ranker_rounds)


def generator_metric(models: RetrievalModels, gen: Generator, valid: Events,
                     users: np.ndarray, k: int, metric: str) -> float:
    """NDCG@k or recall@k of one generator alone on the validation items."""
    target: dict[int, set[int]] = {}
    for u, i in zip(valid.users.tolist(), valid.items.tolist(), strict=True):
        target.setdefault(u, set()).add(i)
    score = ndcg_at_k if metric == "ndcg" else recall_at_k

    def scores_of(block: list[int]) -> list[float]:
        states = [models.user_state(user) for user in block]
        banned = [banned_mask(len(models.catalog), state.items) for state in states]
        return [score(top, target.get(user, set()), k)
                for user, (top, _) in zip(block, gen.propose_many(states, k, banned),
                                          strict=True)]

    ids = users.tolist()
    blocks = [ids[start:start + _METRIC_BLOCK] for start in range(0, len(ids), _METRIC_BLOCK)]
    # Blocks on FIT_THREADS threads (their scans and searches release the GIL), summed user by
    # user in order: the same total, to the last bit, as one thread's.
    total = 0.0
    for block_scores in map_in_order(scores_of, blocks):
        for value in block_scores:
            total += value
    return total / max(1, len(users))


# Users whose proposals ``generator_metric`` asks for at once (their banned masks are held
# together: 256 x 100K items is 25 MB).
_METRIC_BLOCK = 256


def _sample_users(ev: Events, max_users: int, seed: int) -> np.ndarray:
    users = np.unique(ev.users)
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    return users


def tune_generators(base: RetrievalModels, f_ev: Events, v_ev: Events, p: FitParams,
                    grid: TuningGrid, registry: Registry, progress: bool,
                    has_time: bool = True, user_data: UserData | None = None) -> dict:
    """Each generator's config on its own objective, alone on validation; mutates p.

    ``base`` was fitted on ``f_ev`` with the current values (its history is what each user is
    known by). A generator that proposes good lists by itself is scored by NDCG@10; one that
    only feeds the ranker, by recall at its candidate count.
    """
    tables: dict = {}
    sample = _sample_users(v_ev, p.max_eval_users, p.seed)
    data = fit_data(f_ev, base.users, base.catalog, p, build_index=False,
                    user_data=user_data)
    for cls in registry:
        fitted = base.generators.get(cls.name)
        if fitted is None:
            continue
        config = config_of(cls, p.generator(cls.name))
        variants = grid.variants(cls, config)
        if not has_time:  # decays mean nothing without time: only the other values vary
            variants = [v for v in ({k: x for k, x in v.items() if k not in cls.untimed}
                                    for v in variants) if v]
            variants = [dict(t) for t in dict.fromkeys(tuple(v.items()) for v in variants)]
        if not variants:
            continue
        k = 10 if cls.objective == "ndcg" else config.candidates
        column = f"{cls.objective}@{k}"

        def scored(variants: list[dict], cls=cls, column=column, k=k, fitted=fitted
                   ) -> list[dict]:
            rows = []
            configs = [config_of(cls, {**p.generator(cls.name), **v}) for v in variants]
            fits = fit_each_or_skip(cls, data, configs, fitted)
            for values, gen in tqdm(zip(variants, fits, strict=True), total=len(variants),
                                    desc=f"tune {cls.name}", unit="config",
                                    disable=not progress, leave=False):
                rows.append({**values, column: (generator_metric(base, gen, v_ev, sample, k,
                                                                 cls.objective)
                                                if gen is not None else 0.0)})
                del gen  # one variant held at a time
            return rows

        def values_of(row: dict, column=column) -> dict:
            return {key: row[key] for key in row if key != column}

        rows = search_rounds(variants, scored, column, functools.partial(grid.refinements, cls))
        best = max(rows, key=lambda r: r[column])
        p.set_generator(cls.name, **values_of(best))
        tables[cls.name] = rows
    return tables


def search_rounds(first: list[dict], scored: Callable[[list[dict]], list[dict]], column: str,
                  refine: Callable[[dict, list[dict], int], list[dict]]) -> list[dict]:
    """Every round's rows: ``first`` scored, then ``refine``'s untried proposals around the
    best of the latest round, until it proposes nothing untried or the best scores nothing
    (no signal to refine on), at most ``MAX_TUNING_ROUNDS`` rounds in all.

    ``scored`` turns variants into rows (the variant's values plus ``column``); ``refine``
    gets the best row's values, every variant tried and the number of rounds so far."""
    rows = latest = scored(first)
    tried = list(first)
    for rounds in range(1, MAX_TUNING_ROUNDS):
        best = max(latest, key=lambda r: r[column])
        finer = [v for v in refine({k: x for k, x in best.items() if k != column}, tried,
                                   rounds) if v not in tried]
        if not finer or best[column] <= 0:
            break
        latest = scored(finer)
        rows, tried = rows + latest, tried + finer
    return rows


def smooth_costs(rows: list[dict]) -> None:
    """Add ``ndcg_smoothed``: each (method, pool) curve of NDCG change made monotone in the
    relevance weight (isotonic regression through the no-diversity point).

    Diversity cannot buy accuracy: a point that looks cheaper than a weaker setting of the same
    method is validation noise, and choosing the best-looking of dozens of noisy points picks
    exactly those (the test then pays several times the validation cost).
    """
    from sklearn.isotonic import IsotonicRegression

    curves: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["method"] == "none":
            r["ndcg_smoothed"] = 0.0
        else:
            curves.setdefault((r["method"], r["mmr_top_n"]), []).append(r)
    for curve in curves.values():
        lams = [1.0] + [r["mmr_lambda"] for r in curve]
        costs = [0.0] + [r["ndcg_change"] for r in curve]
        fitted = IsotonicRegression(increasing=True).fit_transform(lams, costs)
        for r, value in zip(curve, fitted[1:], strict=True):
            r["ndcg_smoothed"] = float(value)


def tune_diversity(ranker: LambdaRanker, stats: ItemStats, valid_ex: Examples,
                   p: FitParams, grid: TuningGrid | None, spec: FeatureSpec) -> list[dict]:
    """Every diversity method at every strength and pool on validation: the frontier of
    NDCG@10 against intra-list diversity; sets p.diversity, p.mmr_lambda, p.mmr_top_n.

    Among settings within ``mmr_max_ndcg_loss`` of plain ranking, the one that raises
    diversity by ``mmr_min_ild_gain`` at the least NDCG cost; if none does, the most diverse
    affordable one.
    """
    lams = grid.mmr_lambda if grid is not None else (1.0, p.mmr_lambda)
    top_ns = grid.mmr_top_n if grid is not None else (p.mmr_top_n,)
    methods = grid.diversity_methods if grid is not None else (p.diversity,)
    rows = []
    scores = ranker_scores(ranker, valid_ex)
    for top_n in top_ns:
        pipe = RankingPipeline(ranker, stats, RankingConfig(1.0, top_n, spec))
        base_ndcg, base_ild = score_examples(ranker, pipe, valid_ex, 1.0, scores=scores)
        rows.append({"method": "none", "mmr_lambda": 1.0, "mmr_top_n": top_n,
                     "ndcg@10": base_ndcg, "ild": base_ild})
        for method in methods:
            for lam in lams:
                if lam >= 1.0:
                    continue
                ndcg, ild = score_examples(ranker, pipe, valid_ex, lam, method=method,
                                            scores=scores)
                rows.append({"method": method, "mmr_lambda": lam, "mmr_top_n": top_n,
                             "ndcg@10": ndcg, "ild": ild})
    base = rows[0]
    for r in rows:
        r["ndcg_change"] = r["ndcg@10"] / base["ndcg@10"] - 1 if base["ndcg@10"] else 0.0
        r["ild_change"] = r["ild"] / base["ild"] - 1 if base["ild"] else 0.0
    smooth_costs(rows)
    if grid is not None:
        affordable = [r for r in rows if r["ndcg_smoothed"] >= -grid.mmr_max_ndcg_loss]
        enough = [r for r in affordable if r["ild_change"] >= grid.mmr_min_ild_gain]
        best = (max(enough, key=lambda r: (r["ndcg_smoothed"], r["mmr_lambda"])) if enough
                else max(affordable, key=lambda r: (r["ild_change"], r["mmr_lambda"])))
        p.mmr_lambda, p.mmr_top_n = best["mmr_lambda"], best["mmr_top_n"]
        p.diversity = best["method"] if best["method"] != "none" else p.diversity
    return rows


def _set_counts(p: FitParams, base: dict[str, int], scale: float,
                *models: RetrievalModels) -> dict[str, int]:
    """Every generator's candidate count at ``scale`` times its base; the merged maximum is
    their sum. Applied to ``p`` and to the fitted ``models`` (counts are serving-time)."""
    counts = {name: max(1, round(n * scale)) for name, n in base.items()}
    for name, n in counts.items():
        p.set_generator(name, candidates=n)
    p.max_candidates = sum(counts.values())
    for m in models:
        m.config = dataclasses.replace(m.config, max_candidates=p.max_candidates)
        for name in m.generators:
            if name in counts:
                m.with_generator_config(name, candidates=counts[name])
    return counts


def feature_spec(registry: Registry, *models: RetrievalModels, time: bool,
                 events: tuple[str, ...] = ()) -> FeatureSpec:
    """The ranker's features for these models: every generator any of them has, in registry
    order, every similarity space, and a count per event type (``events``)."""
    present = [n for n in registry.names if any(n in m.generators for m in models)]
    spaces = [n for n in present if any(n in m.item_vectors() for m in models)]
    return FeatureSpec(tuple(present), tuple(spaces), time, events)


class PhaseClock:
    """Wall seconds per named phase (summed when a phase repeats), and the process's peak
    RSS when each phase ended, for the manifest: the phase whose peak jumps is the one to
    shrink when a fit outgrows its machine."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_rss: dict[str, int] = {}
        self._last = time.perf_counter()

    def skip(self) -> None:
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._last, 2)
        self.peak_rss.pop(name, None)  # in the order of each phase's last lap: peaks only grow
        self.peak_rss[name] = peak_rss_bytes()
        self._last = now


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


# How far above its best generator, in standard errors of the paired per-user difference, the
# ranker must be on validation to be served (one-sided 95%). Below that the difference is
# within the noise of this validation sample, and the simpler, cheaper generator order is
# served: the ranker's lead then did not carry to the test on ml-100k~untimed (docs/design.md).
MARGIN_Z = 1.645


def paired_margin(a: np.ndarray, b: np.ndarray) -> dict:
    """Mean of ``a - b`` over the same users, its standard error and their ratio (z; None
    when the difference does not vary, so the manifest stays plain JSON)."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = len(diff)
    mean = float(diff.mean()) if n else 0.0
    se = float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    return {"diff": mean, "se": se, "z": mean / se if se > 0 else None, "users": n}


def choose_configuration(validation: dict[str, dict], generators: list[str],
                         mmr_lambda: float, diversity: str = "mmr",
                         pinned: str = "", per_user: dict[str, np.ndarray] | None = None,
                         margin_z: float = MARGIN_Z) -> dict:
    """The configuration to serve, from validation NDCG@10: the tuned ranker (with its
    diversity re-ranking) when it beats its own best generator, else the ranker without it if
    that does, else the best of each generator's own order and the merged order, with a
    warning.

    Never publishing a ranker that a single generator beats is the guard rail: a user's data
    may suit the generators' assumptions better than the ranker's features. With
    ``per_user`` (NDCG@10 per validation user, from ``evaluate``) "beats" means by at least
    ``margin_z`` standard errors of the paired difference; without it, by any amount.
    ``pinned`` (an order) skips the choice and serves that order, with the numbers still
    recorded.
    """
    def ndcg(row: str) -> float:
        return float(validation[row]["ndcg@10"]) if row in validation else -1.0

    ranked = configuration_name(RANKER, mmr_lambda, diversity)
    options = {ranked: ("ranker_mmr", RANKER), "ranker": ("ranker", RANKER),
               RETRIEVAL: (UNION, RETRIEVAL)}
    options.update({f"{GENERATOR}{g}": (g, f"{GENERATOR}{g}") for g in generators})
    scores = {name: ndcg(row) for name, (row, _) in options.items()}
    best_gen = max(generators, key=ndcg) if generators else None
    best_gen_ndcg = ndcg(best_gen) if best_gen else -1.0
    margins: dict[str, dict] = {}

    def beats_best_generator(name: str) -> bool:
        row = options[name][0]
        if best_gen is None:
            return True
        if per_user is not None and row in per_user and best_gen in per_user:
            m = margins[name] = paired_margin(per_user[row], per_user[best_gen])
            return m["diff"] > 0 and (m["z"] is None or m["z"] >= margin_z)
        return scores[name] >= best_gen_ndcg

    served = ranked
    if pinned:
        served = next((n for n, (_, order) in options.items() if order == pinned), None)
        if served is None:
            raise FitError(f"cannot pin the served order to {pinned!r} (known: ranker, "
                           f"retrieval, {', '.join(GENERATOR + g for g in generators)})")
    elif not beats_best_generator(ranked):
        if ranked != "ranker" and beats_best_generator("ranker"):
            served = "ranker"
        else:
            simpler = [n for n in scores if options[n][1] != RANKER]
            served = max(simpler, key=lambda n: scores[n])
        logger.warning(
            "the ranked pipeline does not beat its own best generator on validation (NDCG@10 "
            "%.4f vs %s %.4f%s): serving %s instead (%.4f)", scores[ranked], best_gen,
            best_gen_ndcg, _margin_note(margins.get(ranked)), served, scores[served])
    row, order = options[served]
    if pinned:
        reason = f"pinned to {pinned}"
    elif served == ranked:
        reason = "the tuned ranker beats every generator alone"
    elif served == "ranker":
        reason = f"with its diversity re-ranking the ranker does not beat {best_gen} alone"
    else:
        reason = f"the tuned ranker does not beat {best_gen} alone on validation"
    return {"served": served, "order": order, "row": row,
            "validation_ndcg@10": scores, "best_generator": best_gen,
            "best_generator_ndcg@10": best_gen_ndcg,
            "margin_z": margin_z if per_user is not None else None,
            "margins": margins, "reason": reason}


def _margin_note(margin: dict | None) -> str:
    if not margin:
        return ""
    if margin["z"] is None:
        return f"; the same difference {margin['diff']:+.4f} for every user"
    return f"; paired difference {margin['diff']:+.4f} = {margin['z']:.2f} standard errors"


@dataclass
class TuningSample:
    """The users tuning runs on, re-indexed densely when sampled: ``train`` and ``valid``
    events, their ``users`` vocabulary, and their ``user_data``."""

    train: Events
    valid: Events
    users: Vocabulary
    user_data: UserData | None
    note: dict


def tuning_sample(f_ev: Events, v_ev: Events, max_users: int, seed: int,
                  users: Vocabulary | None = None,
                  user_data: UserData | None = None) -> TuningSample:
    """The training and validation events of at most ``max_users`` users with a validation
    item (all of them when there are fewer), and a note of the sample for the manifest.

    A sample is re-indexed to its own users (ties to users outside it dropped): fitted over
    the full vocabulary, every model carries a row per user of the whole data, so at 1M users
    ALS solved and stored a million empty rows for each of its grid points (1 GB at 256
    factors, and most of each fit's time)."""
    n_users = len(users) if users is not None else int(f_ev.users.max(initial=-1)) + 1
    candidates = np.unique(v_ev.users)
    if max_users <= 0 or len(candidates) <= max_users:
        return TuningSample(f_ev, v_ev, users if users is not None else Vocabulary(
            [str(u) for u in range(n_users)]), user_data,
            {"all": True, "users": int(len(candidates))})
    keep = np.sort(np.random.default_rng(seed).choice(candidates, max_users, replace=False))

    def compact(ev: Events) -> Events:
        sub = ev.take(np.isin(ev.users, keep))
        sub.users = np.searchsorted(keep, sub.users).astype(sub.users.dtype)
        return sub

    sub_users = Vocabulary(users.ids(keep) if users is not None else [str(u) for u in keep])
    sub_data = None
    if user_data is not None:
        attributes = user_data.attributes
        if attributes is not None:
            inside = keep[keep < len(attributes)]
            values = np.full((len(keep), len(attributes.columns)), "", attributes.values.dtype)
            values[:len(inside)] = attributes.values[inside]  # keep is sorted: a prefix
            attributes = UserAttributes(attributes.columns, values)
        friends = user_data.friends
        if friends is not None:
            friends = friends[keep][:, keep].tocsr()
        sub_data = UserData(attributes, friends)
    return TuningSample(compact(f_ev), compact(v_ev), sub_users, sub_data,
                        {"all": False, "users": int(max_users), "of": int(len(candidates))})


def train_pipeline(ev: Events, users: Vocabulary, catalog: ItemCatalog, p: FitParams,
                   grid: TuningGrid | None, progress: bool = True, has_time: bool = True,
                   registry: Registry | None = None, by_time: bool | None = None,
                   splits: tuple[np.ndarray, np.ndarray] | None = None,
                   user_data: UserData | None = None,
                   clock: PhaseClock | None = None, keep_examples: bool = True) -> Trained:
    """Tune, train the ranker and fit the final models on ``ev``.

    ``has_time``: the events carry real timestamps (else time-based features and decays are
    off). ``by_time``: validation and label splits take each user's latest events, as a
    leave-last-out test does; otherwise a seeded random draw, as a random holdout does
    (default: ``has_time``). The splits must be carved the way the test is. ``splits``: the
    validation mask over ``ev`` and the label mask over the rest, carved already (by the Spark
    engine's data stage, the same way). ``user_data``: user attributes and social ties
    aligned to ``users``. ``clock``: the caller's, so that its phases and these are timed in
    the order they ran (the manifest's peak per phase is read in that order).
    ``keep_examples``: return the ranker's examples (the leaderboard's feature ablation
    retrains on them); ``fit`` frees them once diversity is tuned: two sets of
    ``max_ranker_users`` users' candidate features, held through validation and the final
    fit for nothing.
    """
    registry = registry or default_registry()
    by_time = has_time if by_time is None else by_time
    p = dataclasses.replace(p, generators=dict(p.generators))
    if not has_time:
        for cls in registry:
            if cls.untimed:
                p.set_generator(cls.name, **cls.untimed)
    vmask = splits[0] if splits else holdout(ev, 1, p.min_user_items, by_time, p.seed)
    if not vmask.any():
        raise FitError(f"no user has {p.min_user_items} or more items: too little data to "
                       "validate and train the ranker")
    f_ev, v_ev = ev.take(~vmask), ev.take(vmask)
    lmask = (splits[1] if splits else
             holdout(f_ev, p.label_fraction, p.min_user_items - 1, by_time, p.seed + 1))
    g_ev, l_ev = f_ev.take(~lmask), f_ev.take(lmask)
    tuning: dict = {}
    steps = tqdm(total=4, desc="train", unit="step", disable=not progress, leave=False)
    clock = clock or PhaseClock()
    clock.skip()

    steps.set_postfix_str("tune generators")
    base = None
    if grid is not None:
        # On large data each generator's grid is tried on a sample of users (their events
        # and validation items): dozens of fits on every event would take hours, and the
        # values that win on a large sample are the values that win.
        sample = tuning_sample(f_ev, v_ev, p.tune_max_users, p.seed, users, user_data)
        t_ev, tv_ev, sampled = sample.train, sample.valid, sample.note
        base, _ = fit_models(t_ev, sample.users, catalog, p, registry, progress,
                             "tuning models", build_index=False, user_data=sample.user_data)
        tuning.update(tune_generators(base, t_ev, tv_ev, p, grid, registry, progress,
                                      has_time, sample.user_data))
        tuning["tuning_users"] = sampled
        if not sampled["all"]:
            base = None  # fitted on a sample: nothing to reuse for the full fits
        if types_in_use(ev)[1:]:
            # after the generators' own values: the types are weighed for the models served
            types, tuning["event_weights"] = tune_event_weights(
                t_ev, tv_ev, sample.users, catalog, p, registry, progress, sample.user_data,
                _sample_users(tv_ev, p.max_eval_users, p.seed))
            if types != ev.types:
                base = None  # fitted with other weights
                ev = ev.reweighted(types)
                f_ev, v_ev = ev.take(~vmask), ev.take(vmask)
                g_ev, l_ev = f_ev.take(~lmask), f_ev.take(lmask)
    if ev.types is not None:
        p.event_weights = ev.types.to_json()
    clock.lap("tune_generators")
    steps.update()

    steps.set_postfix_str("ranker")
    models_g, stats_g = fit_models(g_ev, users, catalog, p, registry, progress,
                                   "models for ranker labels", previous=base,
                                   user_data=user_data)
    del g_ev, base  # read by nothing after this fit (0.5 GB of events at 20M)
    clock.lap("models_for_labels")
    models_f, stats_f = fit_models(f_ev, users, catalog, p, registry, progress,
                                   "models for validation", previous=models_g,
                                   user_data=user_data)
    clock.lap("models_for_validation")
    spec = feature_spec(registry, models_g, models_f, time=has_time,
                        events=event_types_counted(f_ev))
    del f_ev  # as ``g_ev``: ``ev`` is what the final fit reads
    base_counts = {name: config_of(registry.get(name), p.generator(name)).candidates
                   for name in spec.generators}
    scales = grid.candidate_scales if grid is not None else (1.0,)
    leaves_grid = grid.ranker_num_leaves if grid is not None else (p.ranker_num_leaves,)
    # On many users the grid is scored on rankers of fewer (each point is a set of examples
    # and a LightGBM fit; at 1M users, 20K users' examples of three scales took 28 min and
    # 16 GB), and only the chosen point is trained on max_ranker_users.
    n_users = max(len(np.unique(l_ev.users)), len(np.unique(v_ev.users)))
    tune_users = p.max_ranker_users
    if grid is not None and 0 < p.tune_ranker_users < min(p.max_ranker_users, n_users):
        tune_users = p.tune_ranker_users
    # Scored on a sample (many users), the grid is climbed: every scale at the default
    # leaves, then the other leaves at the best scale (5 rankers instead of 9; at 1M users
    # each took ~28 s, and the leaves' NDCG spread was under 3% at every scale).
    climb = tune_users < p.max_ranker_users and p.ranker_num_leaves in leaves_grid
    # Time-carved labels: the events right after the cut weigh most, as the test's next item
    grading = (p.label_next, p.label_next_grade) if by_time else (0, 1)
    rows, best = [], None

    def try_leaves(choices, counts, scale, train_ex, valid_ex):
        nonlocal best
        for leaves in choices:
            ranker = train_ranker(train_ex, valid_ex, p, leaves, spec)
            pipe = RankingPipeline(ranker, stats_f, RankingConfig(1.0, p.mmr_top_n, spec))
            ndcg, _ = score_examples(ranker, pipe, valid_ex, 1.0)
            rows.append({"candidates": counts, "num_leaves": leaves,
                         "label_next": grading[0], "ndcg@10": ndcg,
                         "trees": ranker.booster.num_trees()})
            if best is None or ndcg > best[0]:
                best = (ndcg, scale, leaves, ranker, train_ex, valid_ex)
            clock.lap("ranker_training")

    for scale in scales:
        counts = _set_counts(p, base_counts, scale, models_g, models_f)
        train_ex = build_examples(models_g, stats_g, l_ev, spec, tune_users, p.seed,
                                  progress, "ranker examples", *grading)
        valid_ex = build_examples(models_f, stats_f, v_ev, spec, tune_users, p.seed,
                                  progress, "validation examples")
        clock.lap("ranker_examples")
        try_leaves((p.ranker_num_leaves,) if climb else leaves_grid, counts, scale, train_ex,
                   valid_ex)
        del train_ex, valid_ex  # the best point's are in ``best``; one scale's held at a time
    if climb:
        _, scale, _, _, train_ex, valid_ex = best
        counts = _set_counts(p, base_counts, scale, models_g, models_f)
        try_leaves([n for n in leaves_grid if n != p.ranker_num_leaves], counts, scale,
                   train_ex, valid_ex)
        del train_ex, valid_ex
    _, scale, leaves, ranker, train_ex, valid_ex = best
    counts = _set_counts(p, base_counts, scale, models_g, models_f)
    p.ranker_num_leaves = leaves
    if grid is not None and grading[0] > 0:
        # Graded labels against flat ones, at the chosen point: which finds validation's
        # next item better depends on the data (validation NDCG@10, graded vs flat: ml-100k
        # 0.1363 vs 0.1316, ml-latest-small 0.0885 vs 0.0958).
        flat = train_ranker(train_ex, valid_ex, p, leaves, spec, flat=True)
        pipe = RankingPipeline(flat, stats_f, RankingConfig(1.0, p.mmr_top_n, spec))
        ndcg, _ = score_examples(flat, pipe, valid_ex, 1.0)
        rows.append({"candidates": counts, "num_leaves": leaves, "label_next": 0, "ndcg@10": ndcg,
                     "trees": flat.booster.num_trees()})
        clock.lap("ranker_training")
        if ndcg > best[0]:
            ranker, grading, p.label_next = flat, (0, 1), 0
            for rel in train_ex.relevant:  # what the ranker was trained on, kept as such
                rel.update(dict.fromkeys(rel, 1))
    tuning["ranker"] = rows
    tuning["ranker_users"] = {"tuned_on": tune_users, "trained_on": tune_users}
    if tune_users < p.max_ranker_users:
        del best, train_ex, valid_ex  # freed before the rebuild
        train_ex = build_examples(models_g, stats_g, l_ev, spec, p.max_ranker_users, p.seed,
                                  progress, "ranker examples", *grading)
    # Nothing after this reads the labels' models and events: a whole set of models, freed
    # before validation's examples are built and the ranker trained on both sets (at 1M
    # users, that is where the fit's peak was) rather than held through the final fit
    # (which raised the peak by 2.6 GB before).
    del models_g, stats_g, l_ev
    release_freed_heap()
    if tune_users < p.max_ranker_users:
        valid_ex = build_examples(models_f, stats_f, v_ev, spec, p.max_ranker_users, p.seed,
                                  progress, "validation examples")
        clock.lap("ranker_examples")
        ranker = train_ranker(train_ex, valid_ex, p, leaves, spec)
        tuning["ranker_users"]["trained_on"] = p.max_ranker_users
        clock.lap("ranker_training")
    steps.update()

    steps.set_postfix_str("diversity")
    # Scored on the users the ranker's grid was scored on: each of the frontier's 56 points
    # reorders every user's list (at 1M users, 20,000 users' lists took 6 of the fit's 52
    # minutes), and a choice made on a sample of users is what the ranker's grid makes too.
    div_ex = valid_ex
    if tune_users < len(valid_ex.users):
        keep = np.zeros(len(valid_ex.users), dtype=bool)
        keep[np.random.default_rng(p.seed).choice(len(keep), tune_users, replace=False)] = True
        div_ex = valid_ex.split(keep)
    tuning["diversity"] = tune_diversity(ranker, stats_f, div_ex, p, grid, spec)
    tuning["diversity_users"] = len(div_ex.users)
    del div_ex
    if not keep_examples:
        train_ex = valid_ex = None
    clock.lap("tune_diversity")
    ranking_config = RankingConfig(p.mmr_lambda, p.mmr_top_n, spec, diversity=p.diversity)
    eval_users = _sample_users(v_ev, p.max_eval_users, p.seed)
    per_user: dict[str, np.ndarray] = {}
    validation = evaluate(models_f, stats_f, RankingPipeline(ranker, stats_f, ranking_config),
                          v_ev.take(np.isin(v_ev.users, eval_users)), 10, progress,
                          per_user=per_user)
    decision = choose_configuration(validation, list(models_f.generators), p.mmr_lambda,
                                    p.diversity, pinned=p.order, per_user=per_user)
    ranking_config.order = decision["order"]
    if decision["served"] == "ranker":  # the ranker alone beat it with MMR
        p.mmr_lambda = ranking_config.mmr_lambda = 1.0
    validation["pipeline"] = validation[decision["row"]]
    tuning["configuration"] = decision
    clock.lap("validation")
    steps.update()

    steps.set_postfix_str("final models")
    # The last reader of validation's models: each is let go as its successor is fitted.
    models, stats = fit_models(ev, users, catalog, p, registry, progress, "final models",
                               previous=models_f, user_data=user_data, release_previous=True)
    del models_f
    clock.lap("final_models")
    steps.update()
    steps.close()
    for name, why in models.skipped.items():
        logger.info("%s generator skipped: %s", name, why)
    # The manifest records every generator's whole config, as served.
    p.generators = {name: dataclasses.asdict(gen.config)
                    for name, gen in models.generators.items()}
    return Trained(models, stats, ranker, ranking_config, p, spec, tuning, validation,
                   train_ex, valid_ex, stats_f, clock.seconds, clock.peak_rss)


def fit(dataset: str, out: Path, p: FitParams | None = None, progress: bool = True,
        grid: TuningGrid | None = None, events: Path | str | None = None,
        registry: Registry | None = None, row_order_time: bool = False,
        engine: str = "python", spark_master: str = "local[2]",
        workdir: Path | None = None, ignore_events: bool = False) -> Path:
    """Fit, validate and publish; returns the new version directory.

    ``grid`` defaults to the full ``TuningGrid``; pass ``p.tune = False`` to keep ``p`` as is.
    ``events``: a retrieval event log folded into the data (``training.eventlog_data``); the
    manifest's ``events`` block says through which seqs, so the server replays only newer ones.
    ``engine="spark"``: the data stage runs in Spark SQL and ALS in Spark MLlib on
    ``spark_master`` (``training.spark``), parquet in ``workdir`` (default: a temporary
    directory); the artifact is the same. ``ignore_events``: fit blind to the data's event
    types (``fit --without events``), as a twin to measure them against.
    """
    if engine == "spark":
        return _fit_on_spark(dataset, out, p, progress, grid, events, registry,
                             row_order_time, spark_master, workdir)
    if engine != "python":
        raise ValueError(f"engine must be 'python' or 'spark', got {engine!r}")
    p = p or FitParams()
    if grid is None and p.tune:
        grid = TuningGrid()
    t_start = time.time()
    clock = PhaseClock()
    ds = load(dataset, row_order_time)
    if events is not None:
        ds = extend_dataset(ds, events)
    if ignore_events:
        ds.event_codes, ds.event_names = None, []
    clock.lap("load")
    catalog = ItemCatalog(ds.items.item_ids, ds.items.titles, ds.items.categories,
                          ds.items.texts)
    users, ev = encode(ds, catalog.vocab, p.event_weights)
    aligned = user_data(ds, users)
    name, fingerprint, has_time = ds.name, ds.fingerprint, ds.has_timestamps
    folded = ds.extra.get("events") if events is not None else None
    del ds  # encoded: its per-row codes are 600 MB at 20M events, held through every phase
    clock.lap("encode")
    trained = train_pipeline(ev, users, catalog, p, grid, progress, has_time, registry,
                             user_data=aligned, clock=clock, keep_examples=False)
    return _publish(out, trained, catalog, users, ev, name, fingerprint, has_time, folded,
                    clock, t_start, {"engine": "python"})


def _fit_on_spark(dataset: str, out: Path, p: FitParams | None, progress: bool,
                  grid: TuningGrid | None, events, registry: Registry | None,
                  row_order_time: bool, master: str, workdir: Path | None) -> Path:
    import tempfile

    from shortlist.training.spark.als import spark_registry
    from shortlist.training.spark.prepare import prepare, refuse_event_types
    from shortlist.training.spark.session import spark_session

    p = p or FitParams()
    # The event log (or stream) is folded in on the driver, as the python engine does, and
    # reaches Spark with the dataset as parquet.
    extended = extend_dataset(load(dataset, row_order_time), events) if events else None
    # before a Spark session starts
    refuse_event_types(resolve_path(dataset.partition(VARIANT_SEP)[0]), extended)
    if grid is None and p.tune:
        grid = TuningGrid()
    t_start = time.time()
    clock = PhaseClock()
    with tempfile.TemporaryDirectory(prefix="shortlist-spark-", dir=workdir) as tmp:
        spark = spark_session(master, local_dir=Path(tmp) / "spark-local")
        try:
            clock.lap("spark_start")
            prep = prepare(spark, dataset, Path(tmp) / "data", p.seed, p.min_user_items,
                           p.label_fraction, row_order_time, extended)
            clock.lap("spark_prepare")
            catalog = ItemCatalog(prep.catalog.item_ids, prep.catalog.titles,
                                  prep.catalog.categories, prep.catalog.texts)
            # Users without events are not in the Spark data stage's vocabulary: their
            # attributes and ties are dropped here (the python engine indexes them).
            profiles = ((extended.users, extended.social) if extended is not None
                        else load_profiles(dataset))
            trained = train_pipeline(
                prep.events, prep.users, catalog, p, grid, progress, prep.has_timestamps,
                spark_registry(spark, Path(tmp) / "als", registry or default_registry()),
                splits=(prep.valid, prep.labels),
                user_data=align_user_data(*profiles, prep.users), clock=clock,
                keep_examples=False)
        finally:
            spark.stop()
    return _publish(out, trained, catalog, prep.users, prep.events, prep.name,
                    prep.fingerprint, prep.has_timestamps,
                    extended.extra["events"] if extended is not None else None, clock, t_start,
                    {"engine": "spark", "spark_master": master})


def _publish(out: Path, trained: Trained, catalog: ItemCatalog, users: Vocabulary, ev: Events,
             name: str, fingerprint: str, has_timestamps: bool, events: dict | None,
             clock: PhaseClock, t_start: float, engine: dict) -> Path:
    final = trained.models
    manifest = {
        "dataset": {"name": name, "fingerprint": fingerprint,
                    "interactions": int(len(ev)), "users": len(users), "items": len(catalog),
                    "has_timestamps": has_timestamps},
        "training": engine,
        "parameters": asdict(trained.params),
        "tuning": trained.tuning,
        "generators": list(final.generators),
        # Registered generators the data could not support, and why.
        "skipped_generators": final.skipped,
        "ranker": {"features": trained.spec.names,
                   "trees": trained.ranker.booster.num_trees(),
                   "importance_gain": trained.ranker.feature_importance()},
        "metrics": {"protocol": "validation: each user's latest item, users with >= "
                                f"{trained.params.min_user_items} items; hyperparameters were "
                                "chosen on it, so it is optimistic (see shortlist-train "
                                "evaluate)",
                    "k": 10, "models": trained.validation},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if events is not None:
        manifest["events"] = events
    version = new_version(fingerprint)
    # What serving looks like for the version's own users: the servers' drift baseline.
    final.drift, ranking_drift = drift_references(
        final, RankingPipeline(trained.ranker, trained.stats, trained.ranking_config),
        reference_users(final, trained.params.seed))
    clock.lap("drift_reference")
    with publish(out, version, manifest) as staging:
        final.save(staging)
        RankingModels(catalog, trained.ranker, trained.stats, trained.ranking_config,
                      ranking_drift).save(staging)
        clock.lap("publish")
        manifest["fit_seconds"] = round(time.time() - t_start, 1)
        manifest["fit_phase_seconds"] = {**clock.seconds, **trained.seconds}
        manifest["fit_peak_rss_bytes"] = peak_rss_bytes()
        manifest["fit_phase_peak_rss_bytes"] = {**clock.peak_rss, **trained.peak_rss}
        # the manifest's keys are sorted: the order the phases (last) ended in, for
        # `peak_growth` to tell which of two phases at the same peak raised it
        manifest["fit_phase_order"] = list(clock.peak_rss)
    return out / version
