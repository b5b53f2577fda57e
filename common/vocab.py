"""One id vocabulary per entity, saved with every model.

External ids are strings (MovieLens ids, UUIDs, SKUs); models work on dense int32 indices.
Unknown ids map to -1 so callers can fall back to cold start instead of raising.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

UNKNOWN = -1


class Vocabulary:
    """Bidirectional map between external string ids and dense indices."""

    def __init__(self, ids: Sequence[str] | np.ndarray = ()) -> None:
        self._ids: list[str] = [str(i) for i in ids]
        self._index: dict[str, int] = {}
        for i, ext in enumerate(self._ids):
            if ext in self._index:
                raise ValueError(f"duplicate id in vocabulary: {ext!r}")
            self._index[ext] = i

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, ext: object) -> bool:
        return ext in self._index

    def index(self, ext: str) -> int:
        return self._index.get(ext, UNKNOWN)

    def indices(self, ext_ids: Iterable[str]) -> np.ndarray:
        get = self._index.get
        return np.array([get(e, UNKNOWN) for e in ext_ids], dtype=np.int64)

    def unknown(self, ext_ids: Iterable[str]) -> list[str]:
        """The ids not in the vocabulary, in order (one dict probe each, no method calls)."""
        index = self._index
        return [e for e in ext_ids if e not in index]

    def id(self, idx: int) -> str:
        return self._ids[idx]

    def ids(self, idx: Iterable[int] | np.ndarray) -> list[str]:
        if isinstance(idx, np.ndarray):
            idx = idx.tolist()  # plain ints: no per-element numpy scalar conversion
        ids = self._ids
        return [ids[i] for i in idx]

    @property
    def all_ids(self) -> list[str]:
        return list(self._ids)

    def add(self, ext: str) -> int:
        """Index of ``ext``, appending it if new (new users and upserted items)."""
        idx = self._index.get(ext)
        if idx is None:
            idx = len(self._ids)
            self._ids.append(ext)
            self._index[ext] = idx
        return idx

    @classmethod
    def from_values(cls, values: Iterable[str]) -> tuple[Vocabulary, np.ndarray]:
        """Vocabulary of the distinct values in first-seen order, plus the encoded values."""
        vocab = cls()
        codes = np.fromiter((vocab.add(str(v)) for v in values), dtype=np.int64)
        return vocab, codes

    def save(self, path: Path) -> None:
        # A fixed-width unicode array loads without pickle (allow_pickle=False).
        arr = np.asarray(self._ids, dtype=np.str_) if self._ids else np.zeros(0, dtype="<U1")
        with open(path, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        arr = np.load(path, allow_pickle=False)
        return cls(arr.tolist())
