"""Content: items whose text is closest to the user's taste (a time-decayed mean of their items'
TF-IDF+SVD vectors), over a cosine HNSW index. Also answers "similar items" and embeds items
added while serving."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shortlist.common.catalog import ItemCatalog
from shortlist.retrieval.content import ContentModel, item_document
from shortlist.retrieval.generators.base import FitData, Generator, HnswParams, UserState
from shortlist.retrieval.hnsw import CosineIndex, top_k_allowed, top_k_allowed_many

logger = logging.getLogger(__name__)


@dataclass
class ContentConfig:
    candidates: int = 100
    # Short histories lean on content: a few items already say what someone likes.
    light_factor: float = 2.0
    dim: int = 64
    taste_half_life_days: float = 365.0
    # How much a disliked item (a negative event) counts against its direction, relative to
    # a liked one for it: less, since one dislike says less about a whole genre than a like.
    dislike_weight: float = 0.5


def documents(catalog: ItemCatalog) -> list[str] | None:
    """Each item's text, or None when the catalog has nothing but ids to go on."""
    informative = (any(catalog.categories) or any(t.strip() for t in catalog.texts)
                   or any(t != i for t, i in zip(catalog.titles, catalog.vocab.all_ids,
                                                 strict=True)))
    if len(catalog) < 3 or not informative:
        return None
    return [item_document(t, c, x) for t, c, x in
            zip(catalog.titles, catalog.categories, catalog.texts, strict=True)]


class ContentGenerator(Generator):
    """TF-IDF+SVD taste vector over a cosine HNSW index."""

    name = "content"
    Config = ContentConfig
    content_space = True
    untimed = {"taste_half_life_days": 0.0}

    def __init__(self, model: ContentModel, index: CosineIndex | None,
                 config: ContentConfig) -> None:
        self.model = model
        self.index = index
        self.config = config

    @classmethod
    def fit(cls, data: FitData, config: ContentConfig,
            previous: Generator | None = None) -> ContentGenerator | None:
        # The model depends on the catalog and its dimension only, never on the events.
        if isinstance(previous, ContentGenerator) and previous.config.dim == config.dim \
                and len(previous.model.vectors) == len(data.catalog):
            model, index = previous.model, previous.index
        else:
            docs = documents(data.catalog)
            if docs is None:
                logger.warning("content generator skipped: items have no title, category or "
                               "text (add an items.csv to enable it)")
                return None
            try:
                model = ContentModel(dim=config.dim, seed=data.seed).fit(docs)
            except ValueError as exc:  # e.g. an empty vocabulary
                logger.warning("content generator skipped: %s", exc)
                return None
            index = None
        if index is None and data.build_index:
            h = data.hnsw
            index = CosineIndex.build(model.vectors, h.m, h.ef_construction, h.ef, data.seed)
        return cls(model, index, config)

    @classmethod
    def tuning_grid(cls, config: ContentConfig) -> list[dict[str, Any]]:
        return [{"taste_half_life_days": h} for h in (30.0, 180.0, 730.0, 0.0)]

    def taste(self, user: UserState) -> np.ndarray | None:
        if "content" not in user.memo:
            signs = (np.where(user.weights < 0, -self.config.dislike_weight, 1.0)
                     if (user.weights < 0).any() else None)
            user.memo["content"] = (
                self.model.taste(user.items, user.now - user.stamps,
                                 self.config.taste_half_life_days, signs)
                if len(user.items) else None)
        return user.memo["content"]

    def propose(self, user: UserState, k: int,
                banned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        taste = self.taste(user)
        if taste is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return top_k_allowed(self.index, self.model.vectors, taste, k, banned)

    def propose_many(self, users: Sequence[UserState], k: int,
                     banned: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        return top_k_allowed_many(self.index, self.model.vectors,
                                  [self.taste(u) for u in users], k, banned)

    def affinity(self, user: UserState, items: np.ndarray) -> np.ndarray | None:
        taste = self.taste(user)
        if taste is None:
            return None
        return (self.model.vectors[items] @ taste).astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        return self.model.vectors

    def similar_items(self, item: int, k: int,
                      banned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return top_k_allowed(self.index, self.model.vectors, self.model.vectors[item], k,
                             banned)

    def add_item(self, idx: int, document: str) -> None:
        """Embed with the fitted vocabulary and SVD: the item lands in the same space."""
        vec = self.model.embed([document])[0]
        vectors = self.model.vectors
        if idx >= len(vectors):
            vectors = np.vstack([vectors, np.zeros((idx + 1 - len(vectors), vectors.shape[1]),
                                                   vectors.dtype)])
        vectors[idx] = vec
        self.model.vectors = vectors
        if self.index is not None:
            self.index.add(vectors, idx)

    def save(self, directory: Path) -> None:
        self.model.save(directory)
        if self.index is not None:
            self.index.save(directory / "index.bin")

    @classmethod
    def load(cls, directory: Path, config: ContentConfig, catalog: ItemCatalog,
             hnsw: HnswParams) -> ContentGenerator:
        model = ContentModel.load(directory)
        index = (CosineIndex.load(directory / "index.bin", model.vectors, hnsw.ef)
                 if (directory / "index.bin").is_file() else None)
        return cls(model, index, config)
