"""The item catalog shared by retrieval and ranking: ids, titles and categories.

Stored as one JSON file so it is readable, diffable and loads without pickle.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from shortlist.common.artifacts import read_json, write_json
from shortlist.common.vocab import Vocabulary


class ItemCatalog:
    def __init__(self, item_ids: list[str], titles: list[str],
                 categories: list[list[str]], texts: list[str] | None = None) -> None:
        self.vocab = Vocabulary(item_ids)
        self.titles = list(titles)
        self.texts = list(texts) if texts is not None else [""] * len(self.titles)
        self.categories = [list(c) for c in categories]
        self.category_vocab = Vocabulary(sorted({c for cs in self.categories for c in cs}))
        self._matrix: sp.csr_matrix | None = None

    def __len__(self) -> int:
        return len(self.vocab)

    def add(self, item_id: str, title: str, categories: list[str], text: str = "") -> int:
        """Insert or update an item; returns its index."""
        idx = self.vocab.add(item_id)
        for c in categories:
            self.category_vocab.add(c)
        if idx == len(self.titles):
            self.titles.append(title)
            self.categories.append(list(categories))
            self.texts.append(text)
        else:
            self.titles[idx] = title
            self.categories[idx] = list(categories)
            self.texts[idx] = text
        self._matrix = None
        return idx

    @property
    def category_matrix(self) -> sp.csr_matrix:
        """items x categories 0/1 matrix."""
        if self._matrix is None:
            rows, cols = [], []
            for i, cs in enumerate(self.categories):
                for c in cs:
                    rows.append(i)
                    cols.append(self.category_vocab.index(c))
            self._matrix = sp.csr_matrix(
                (np.ones(len(rows), np.float32), (rows, cols)),
                shape=(len(self), max(1, len(self.category_vocab))),
            )
        return self._matrix

    def category_mask(self, names: Iterable[str]) -> np.ndarray:
        """Boolean mask of items having at least one of the named categories."""
        cols = [i for i in self.category_vocab.indices(names) if i >= 0]
        if not cols:
            return np.zeros(len(self), dtype=bool)
        return np.asarray(self.category_matrix[:, cols].sum(axis=1)).ravel() > 0

    def save(self, path: Path) -> None:
        write_json(path, {"item_ids": self.vocab.all_ids, "titles": self.titles,
                          "categories": self.categories, "texts": self.texts})

    @classmethod
    def load(cls, path: Path) -> ItemCatalog:
        data = read_json(path)
        return cls(data["item_ids"], data["titles"], data["categories"], data.get("texts"))
