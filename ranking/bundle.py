"""Ranking's part of an artifact version: ranker text model, item statistics, config, and the
drift reference (``drift_reference.json``, absent from versions fitted before it existed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shortlist.common.artifacts import ArtifactError, read_json, write_json
from shortlist.common.catalog import ItemCatalog
from shortlist.common.drift import Reference
from shortlist.ranking.features import ItemStats
from shortlist.ranking.pipeline import RankingConfig, RankingPipeline
from shortlist.ranking.ranker import LambdaRanker

CATALOG = "catalog.json"
DIR = "ranking"


@dataclass
class RankingModels:
    catalog: ItemCatalog
    ranker: LambdaRanker
    stats: ItemStats
    config: RankingConfig
    # The scores and popularity it returned at fit time (training.drift); None: no drift.
    drift: Reference | None = None

    def pipeline(self) -> RankingPipeline:
        return RankingPipeline(self.ranker, self.stats, self.config)

    def save(self, root: Path) -> None:
        d = root / DIR
        d.mkdir(parents=True, exist_ok=True)
        if not (root / CATALOG).exists():
            self.catalog.save(root / CATALOG)
        self.ranker.save(d / "ranker.txt")
        self.stats.save(d)
        write_json(d / "config.json", {**self.config.to_json(),
                                       "spaces": sorted(self.stats.spaces),
                                       "diversity_space": self.stats.diversity_space})
        if self.drift is not None:
            self.drift.save(d)

    @classmethod
    def load(cls, root: Path) -> RankingModels:
        d = root / DIR
        data = read_json(d / "config.json")
        if "features" not in data:
            raise ArtifactError(f"{root}: written by an older Shortlist (no feature spec in "
                                f"{DIR}/config.json); fit it again")
        return cls(ItemCatalog.load(root / CATALOG), LambdaRanker.load(d / "ranker.txt"),
                   ItemStats.load(d, data["spaces"], data["diversity_space"]),
                   RankingConfig.from_json(data), Reference.load(d))
