"""Content model: TF-IDF over title, categories and text, reduced by SVD to dense unit vectors.

The fitted vocabulary, IDF weights and SVD components are saved as plain arrays, so a new item
can be embedded at serving time without pickle and land in the same space as the catalog.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from shortlist.common.artifacts import read_json, write_json
from shortlist.retrieval.trending import decay

_YEAR = re.compile(r"\((\d{4})\)\s*$")


def item_document(title: str, categories: list[str], text: str) -> str:
    """The text that represents an item; categories are repeated so they weigh like tags."""
    cats = " ".join(f"cat_{c.lower().replace(' ', '_').replace('-', '_')}" for c in categories)
    year = _YEAR.search(title)
    decade = f"decade_{year.group(1)[:3]}0s" if year else ""
    return f"{title} {cats} {cats} {decade} {text}"


def normalize_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class ContentModel:
    def __init__(self, dim: int = 64, min_df: int = 1, max_features: int = 50000,
                 seed: int = 42) -> None:
        self.dim = dim
        self.min_df = min_df
        self.max_features = max_features
        self.seed = seed
        self.vocabulary: dict[str, int] = {}
        self.idf = np.zeros(0, dtype=np.float64)
        self.components = np.zeros((0, 0), dtype=np.float32)
        self.vectors = np.zeros((0, dim), dtype=np.float32)
        self._embedder: TfidfVectorizer | None = None

    def fit(self, documents: list[str]) -> ContentModel:
        vec = TfidfVectorizer(
            lowercase=True, sublinear_tf=True, min_df=self.min_df,
            max_features=self.max_features, token_pattern=r"(?u)\b\w\w+\b", dtype=np.float32,
        )
        tfidf = vec.fit_transform(documents)
        self._embedder = None
        self.vocabulary = {k: int(v) for k, v in vec.vocabulary_.items()}
        self.idf = vec.idf_.astype(np.float64)
        dim = max(1, min(self.dim, tfidf.shape[1] - 1, tfidf.shape[0] - 1))
        svd = TruncatedSVD(n_components=dim, random_state=self.seed, algorithm="randomized")
        svd.fit(tfidf)
        self.components = svd.components_.astype(np.float32)
        self.dim = dim
        self.vectors = self._project(tfidf)
        return self

    def _project(self, tfidf) -> np.ndarray:
        return normalize_rows(np.asarray(tfidf @ self.components.T, dtype=np.float32))

    def embed(self, documents: list[str]) -> np.ndarray:
        """Unit vectors for new documents in the fitted space (all-zero if no known term)."""
        vec = self._embedder
        if vec is None:  # built once: validating the vocabulary costs ~1 ms per call
            vec = TfidfVectorizer(
                lowercase=True, sublinear_tf=True, token_pattern=r"(?u)\b\w\w+\b",
                vocabulary=self.vocabulary, dtype=np.float32,
            )
            vec.idf_ = self.idf
            vec.transform([""])  # validates the vocabulary now, not under concurrent calls
            self._embedder = vec
        return self._project(vec.transform(documents))

    def taste(self, item_idx: np.ndarray, ages_s: np.ndarray,
              half_life_days: float, signs: np.ndarray | None = None) -> np.ndarray:
        """The user's taste: time-decayed mean of their items' vectors, as a unit vector.

        ``signs`` (per item, default 1) lets a disliked item count against its direction."""
        if len(item_idx) == 0:
            return np.zeros(self.vectors.shape[1], dtype=np.float32)
        w = decay(np.asarray(ages_s, dtype=np.float64), half_life_days)
        if signs is not None:
            w = w * signs
        v = (w[:, None] * self.vectors[item_idx]).sum(axis=0)
        n = np.linalg.norm(v)
        return (v / n if n > 0 else v).astype(np.float32)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        write_json(directory / "tfidf_vocabulary.json", self.vocabulary)
        np.save(directory / "idf.npy", self.idf, allow_pickle=False)
        np.save(directory / "svd_components.npy", self.components, allow_pickle=False)
        np.save(directory / "item_vectors.npy", self.vectors, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path) -> ContentModel:
        model = cls()
        model.vocabulary = read_json(directory / "tfidf_vocabulary.json")
        model.idf = np.load(directory / "idf.npy", allow_pickle=False)
        model.components = np.load(directory / "svd_components.npy", allow_pickle=False)
        model.vectors = np.load(directory / "item_vectors.npy", allow_pickle=False)
        model.dim = model.components.shape[0]
        return model
