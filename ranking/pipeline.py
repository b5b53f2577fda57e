"""Score candidates with the ranker, then diversify the top with MMR."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from shortlist.common.candidates import Candidates
from shortlist.ranking.calibration import calibrate
from shortlist.ranking.dpp import dpp
from shortlist.ranking.explain import closest_items, contributions
from shortlist.ranking.features import FeatureSpec, ItemStats, build_features
from shortlist.ranking.mmr import mmr
from shortlist.ranking.ranker import LambdaRanker

RANKER = "ranker"
RETRIEVAL = "retrieval"
# Re-ranking for diversity: MMR (pairwise distance to what is chosen), a DPP (the set's
# volume in the similarity space) or calibration (the user's own category mix).
DIVERSITY_METHODS = ("mmr", "dpp", "calibration")
GENERATOR = "generator:"  # + a generator's name


@dataclass
class RankingConfig:
    """What ranking does with a version's models; chosen in training, saved with them.

    ``order`` is the configuration served: "ranker" (the LightGBM model, then MMR), or, when
    training found that the ranker loses to something simpler on validation, "generator:NAME"
    (that generator's own order over the candidates) or "retrieval" (the merged order).
    Under "ranker", a request whose candidates the model scores all alike gets the merged
    order: the model has no opinion there, and diversity over a tie would serve the most
    varied candidates rather than the likeliest (``Pipeline.rank``).
    """

    # Weight of relevance against diversity, 1.0 being none (the name is MMR's, the meaning
    # is the same for every method), and the pool of best-scored candidates diversified.
    mmr_lambda: float = 0.8
    mmr_top_n: int = 50
    features: FeatureSpec = field(default_factory=lambda: FeatureSpec((), ()))
    order: str = RANKER
    diversity: str = "mmr"  # one of DIVERSITY_METHODS

    def to_json(self) -> dict:
        return {"mmr_lambda": self.mmr_lambda, "mmr_top_n": self.mmr_top_n,
                "features": self.features.to_json(), "order": self.order,
                "diversity": self.diversity}

    @classmethod
    def from_json(cls, data: dict) -> RankingConfig:
        return cls(float(data["mmr_lambda"]), int(data["mmr_top_n"]),
                   FeatureSpec.from_json(data["features"]), str(data.get("order", RANKER)),
                   str(data.get("diversity", "mmr")))


# Ranker scores closer than this (relative) count as a tie across the whole request.
_TIE = 1e-6


def configuration_name(order: str, mmr_lambda: float, diversity: str = "mmr") -> str:
    """How a response names what served it: "ranker+mmr" (or +dpp, +calibration),
    "ranker", "generator:NAME" or "retrieval"."""
    if order == RANKER:
        return f"ranker+{diversity}" if mmr_lambda < 1.0 else "ranker"
    return order


class RankingPipeline:
    def __init__(self, ranker: LambdaRanker, stats: ItemStats, config: RankingConfig) -> None:
        names = config.features.names
        if ranker.booster is not None and list(ranker.booster.feature_name()) != names:
            raise ValueError(f"ranker features {ranker.booster.feature_name()} differ from "
                             f"the spec's {names}")
        self.ranker = ranker
        self.stats = stats
        self.config = config

    def features(self, cands: Candidates) -> np.ndarray:
        return build_features(cands, self.stats, self.config.features)

    def score(self, cands: Candidates) -> np.ndarray:
        """The ranker's score of each candidate (before any shift or diversity)."""
        return self.ranker.predict(self.features(cands))

    def configuration(self, mmr_lambda: float | None = None, order: str = "") -> str:
        lam = self.config.mmr_lambda if mmr_lambda is None else mmr_lambda
        return configuration_name(order or self.config.order, lam, self.config.diversity)

    def check_order(self, order: str) -> str:
        """``order`` (an experiment variant's, instead of the artifact's) if this version can
        serve it, else ValueError saying why. Empty: the artifact's. A generator this version
        never had is refused rather than served as the merged order under its name."""
        if not order or order == RETRIEVAL:
            return order
        if order == RANKER:
            if self.ranker.booster is None:
                raise ValueError("this version has no trained ranker")
            return order
        name = order.removeprefix(GENERATOR)
        if order == name or not name:
            raise ValueError(f"unknown order {order[:64]!r}: expected {RANKER!r}, "
                             f"{RETRIEVAL!r} or {GENERATOR}NAME")
        if self.config.features.generators and name not in self.config.features.generators:
            raise ValueError(f"this version has no generator {name[:64]!r} (it has "
                             f"{', '.join(self.config.features.generators)})")
        return order

    def rank(self, cands: Candidates, k: int, mmr_lambda: float | None = None,
             order: str | None = None, shift: np.ndarray | None = None,
             keep: np.ndarray | None = None, scores: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """(positions into ``cands.items`` in final order, their scores, timings).

        ``order`` overrides the configured one (evaluation compares them); scores are the
        ranker's, or the generator's own (0 where it did not propose), or the merged score.
        Business rules (``common.rules``): ``keep`` drops candidates before anything looks at
        them; ``shift`` adds log-odds to each candidate's score before diversity.
        ``scores``: the ranker's scores of ``cands``, from ``score`` (evaluation ranks each
        user's candidates in several ways, and features and trees are most of the cost).
        """
        if keep is not None and not keep.all():
            rows = np.flatnonzero(keep)
            picked, scores, timings = self.rank(cands.take(rows), k, mmr_lambda, order,
                                                None if shift is None else shift[rows],
                                                scores=None if scores is None else scores[rows])
            return rows[picked], scores, timings
        if shift is not None and not shift.any():
            shift = None
        order = order or self.config.order
        timings: dict[str, float] = {}
        if order != RANKER:
            t0 = time.perf_counter()
            if shift is None:
                picked, scores = self._simple_order(cands, k, order)
            else:
                # the order as log-odds (reciprocal rank, as the merge weighs ranks) to shift
                full, full_scores = self._simple_order(cands, len(cands), order)
                odds = -np.log(60.0 + np.arange(len(full))) + shift[full]
                best = np.argsort(-odds, kind="stable")[:k]
                picked, scores = full[best], full_scores[best]
            timings["order"] = (time.perf_counter() - t0) * 1e3
            return picked, scores, timings
        t0 = time.perf_counter()
        if scores is None:
            x = self.features(cands)
            timings["features"] = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
            scores = self.ranker.predict(x)
        if len(scores) > 1 and float(np.ptp(scores)) <= _TIE * max(1.0, abs(float(scores[0]))):
            # Every candidate in the same leaves of every tree: a user unlike any the ranker
            # learned from (a newcomer with no history, whose candidates come from cold-start
            # generators). The generators' merged order is the only opinion left.
            picked, scores, rest = self.rank(cands, k, mmr_lambda, RETRIEVAL, shift)
            timings["model"] = (time.perf_counter() - t0) * 1e3
            return picked, scores, {**timings, **rest}
        if shift is not None:
            scores = (scores + shift).astype(scores.dtype)
        timings["model"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        picked = self.diversify(cands.items, scores, k, mmr_lambda, cands.recent_items)
        timings["mmr"] = (time.perf_counter() - t0) * 1e3
        return picked, scores[picked], timings

    def explain(self, cands: Candidates, positions: np.ndarray, order: str = ""
                ) -> tuple[list[list[tuple[str, str, float]]], np.ndarray]:
        """For the candidates at ``positions`` (as ``rank`` returned them for ``cands``): the
        features that moved the ranker's score most (none when another order served), and
        the user's recent item each resembles most in the diversity space (-1: none)."""
        positions = np.asarray(positions, dtype=np.int64)
        contrib: list[list[tuple[str, str, float]]] = [[] for _ in positions]
        if ((order or self.config.order) == RANKER and self.ranker.booster is not None
                and len(positions)):
            contrib = contributions(self.ranker.booster, self.features(cands)[positions],
                                    self.config.features.names)
        space = (self.stats.spaces.get(self.stats.diversity_space)
                 if self.stats.diversity_space else None)
        return contrib, closest_items(cands.items[positions], cands.recent_items, space)

    def score_ranks(self, cands: Candidates, positions: np.ndarray, order: str = "",
                    shift: np.ndarray | None = None) -> np.ndarray:
        """1-based positions of the candidates at ``positions`` by the ranker's score (with
        the rules' ``shift``), as diversity received them: where each stood before diversity
        and pins moved it. Zeros when another order served (no ranker score to stand by)."""
        positions = np.asarray(positions, dtype=np.int64)
        if ((order or self.config.order) != RANKER or self.ranker.booster is None
                or not len(positions)):
            return np.zeros(len(positions), np.int64)
        scores = self.ranker.predict(self.features(cands))
        if shift is not None:
            scores = scores + shift
        return 1 + (scores[None, :] > scores[positions][:, None]).sum(axis=1)

    @staticmethod
    def _simple_order(cands: Candidates, k: int, order: str) -> tuple[np.ndarray, np.ndarray]:
        n = len(cands)
        if order == RETRIEVAL:
            picked = np.arange(min(k, n))
            return picked, cands.retrieval_score[picked].astype(np.float32)
        col = cands.column(order.removeprefix(GENERATOR))
        if col is None:  # the generator proposed nothing here: the merged order stands
            picked = np.arange(min(k, n))
            return picked, np.zeros(len(picked), np.float32)
        ranks = cands.ranks[:, col].astype(np.int64)
        ranks[ranks <= 0] = np.iinfo(np.int64).max  # not proposed: after, in merged order
        picked = np.lexsort((np.arange(n), ranks))[:k]
        scores = np.nan_to_num(cands.scores[picked, col], nan=0.0).astype(np.float32)
        return picked, scores

    def diversify(self, items: np.ndarray, scores: np.ndarray, k: int,
                  mmr_lambda: float | None = None, recent: np.ndarray | None = None,
                  method: str | None = None) -> np.ndarray:
        """Positions of the final k: the configured diversity method over the
        ``mmr_top_n`` best-scored candidates (``recent``: the user's items, for calibration).
        """
        lam = self.config.mmr_lambda if mmr_lambda is None else mmr_lambda
        method = method or self.config.diversity
        top = np.argsort(-scores, kind="stable")[: max(k, self.config.mmr_top_n)]
        if lam >= 1.0:
            return top[:k]
        if method == "dpp":
            return top[dpp(scores[top], self.stats.diversity[items[top]], k, lam)]
        if method == "calibration":
            cats = self.stats.category_shares(items[top])
            target = self.stats.category_shares(np.zeros(0, np.int64) if recent is None
                                                else recent[recent < len(self.stats)])
            return top[calibrate(scores[top], cats, target.sum(axis=0), k, 1.0 - lam)]
        return top[mmr(scores[top], self.stats.diversity[items[top]], k, lam)]
