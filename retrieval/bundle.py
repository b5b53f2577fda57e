"""Retrieval's part of an artifact version: save from training, load for serving."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from shortlist.common.artifacts import read_json, write_json
from shortlist.common.catalog import ItemCatalog
from shortlist.common.vocab import Vocabulary
from shortlist.retrieval.als import AlsModel
from shortlist.retrieval.candidates import CandidateGenerator, RetrievalConfig
from shortlist.retrieval.content import ContentModel
from shortlist.retrieval.history import UserHistory
from shortlist.retrieval.hnsw import HnswIndex, MipsIndex
from shortlist.retrieval.trending import TrendingModel

CATALOG = "catalog.json"
DIR = "retrieval"


@dataclass
class HnswParams:
    m: int = 16
    ef_construction: int = 200
    ef: int = 200


@dataclass
class RetrievalModels:
    catalog: ItemCatalog
    users: Vocabulary
    history: UserHistory
    trending: TrendingModel
    content: ContentModel | None
    content_index: HnswIndex | None
    als: AlsModel | None
    als_index: MipsIndex | None
    config: RetrievalConfig
    hnsw: HnswParams
    now: int
    # Seconds each generator took to fit (training reports only; not saved).
    fit_seconds: dict[str, float] = field(default_factory=dict)

    def generator(self) -> CandidateGenerator:
        return CandidateGenerator(len(self.catalog), self.trending, self.content,
                                  self.content_index, self.als, self.als_index, self.now,
                                  self.config)

    def save(self, root: Path) -> None:
        d = root / DIR
        d.mkdir(parents=True, exist_ok=True)
        if not (root / CATALOG).exists():
            self.catalog.save(root / CATALOG)
        self.users.save(d / "users.npy")
        self.history.save(d / "history.npz")
        self.trending.save(d / "trending.npy")
        if self.content is not None and self.content_index is not None:
            self.content.save(d / "content")
            self.content_index.save(d / "content" / "index.bin")
        if self.als is not None and self.als_index is not None:
            self.als.save(d / "als")
            self.als_index.save(d / "als" / "index.bin")
        write_json(d / "config.json", {
            "candidates": asdict(self.config), "hnsw": asdict(self.hnsw), "now": self.now,
            "trending_half_life_days": self.trending.half_life_days,
        })

    @classmethod
    def load(cls, root: Path, ef: int | None = None) -> RetrievalModels:
        d = root / DIR
        cfg = read_json(d / "config.json")
        hnsw = HnswParams(**cfg["hnsw"])
        ef = ef or hnsw.ef
        content = content_index = als = als_index = None
        if (d / "content" / "index.bin").is_file():
            content = ContentModel.load(d / "content")
            content_index = HnswIndex.load(d / "content" / "index.bin", "cosine",
                                           content.vectors.shape[1], ef)
        if (d / "als" / "index.bin").is_file():
            als = AlsModel.load(d / "als")
            als_index = MipsIndex.load(d / "als" / "index.bin", als.item_factors, ef)
        return cls(
            catalog=ItemCatalog.load(root / CATALOG),
            users=Vocabulary.load(d / "users.npy"),
            history=UserHistory.load(d / "history.npz"),
            trending=TrendingModel.load(d / "trending.npy", cfg["trending_half_life_days"]),
            content=content, content_index=content_index, als=als, als_index=als_index,
            config=RetrievalConfig(**cfg["candidates"]), hnsw=hnsw, now=int(cfg["now"]),
        )


def banned_mask(n_items: int, *parts: np.ndarray) -> np.ndarray:
    mask = np.zeros(n_items, dtype=bool)
    for p in parts:
        p = np.asarray(p, dtype=np.int64)
        mask[p[(p >= 0) & (p < n_items)]] = True
    return mask
