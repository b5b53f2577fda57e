"""One id vocabulary per entity, saved with every model.

External ids are strings (MovieLens ids, UUIDs, SKUs); models work on dense int32 indices.
Unknown ids map to -1 so callers can fall back to cold start instead of raising.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

UNKNOWN = -1


def _nul_ended(ids: Iterable[str]) -> str | None:
    """The first id ending in a NUL character, if any."""
    return next((i for i in ids if isinstance(i, str) and i.endswith("\0")), None)


class Vocabulary:
    """Bidirectional map between external string ids and dense indices.

    The ids it is built with are held as one numpy string array, found through their sorted
    (process-local) string hashes; only ids added later (new users and items while serving)
    live in a dict. A Python list and dict of a million ids cost 142 MB of a retrieval
    server's memory, the array with its hashes and their order 44 MB; a lookup is a binary
    search over 8-byte integers and one string comparison.
    """

    def __init__(self, ids: Sequence[str] | np.ndarray = ()) -> None:
        base = np.asarray(ids, dtype=np.str_) if len(ids) else np.zeros(0, dtype="<U1")
        if len(base) and not isinstance(ids, np.ndarray) and _nul_ended(ids):
            # numpy's strings drop trailing NULs: such an id would come back as another one
            raise ValueError(f"vocabulary id ends in a NUL character: {_nul_ended(ids)!r}")
        self._base = base
        # str's hash is salted per process: computed here, never saved
        hashes = np.fromiter(map(hash, base.tolist()), dtype=np.int64, count=len(base))
        self._order = np.argsort(hashes, kind="stable")
        self._hashes = hashes[self._order]
        same = np.flatnonzero(self._hashes[1:] == self._hashes[:-1])
        for a, b in zip(self._order[same].tolist(), self._order[same + 1].tolist(),
                        strict=True):
            if base[a] == base[b]:  # one string comparison per hash collision, if any
                raise ValueError(f"duplicate id in vocabulary: {str(base[a])!r}")
        self._added: list[str] = []  # ids added after construction, indexed from len(base)
        self._added_index: dict[str, int] = {}

    def _find(self, ext: str) -> int:
        hashes, h = self._hashes, hash(ext)
        pos = int(np.searchsorted(hashes, h))
        while pos < len(hashes) and hashes[pos] == h:  # more than once only on a collision
            idx = int(self._order[pos])
            if self._base[idx] == ext:
                return idx
            pos += 1
        return self._added_index.get(ext, UNKNOWN)

    def __len__(self) -> int:
        return len(self._base) + len(self._added)

    def __contains__(self, ext: object) -> bool:
        return isinstance(ext, str) and self._find(ext) != UNKNOWN

    def index(self, ext: str) -> int:
        return self._find(ext)

    def indices(self, ext_ids: Iterable[str]) -> np.ndarray:
        ext = list(ext_ids)
        out = np.full(len(ext), UNKNOWN, dtype=np.int64)
        hashes = self._hashes
        if len(hashes) and ext:
            wanted = np.fromiter(map(hash, ext), dtype=np.int64, count=len(ext))
            pos = np.minimum(np.searchsorted(hashes, wanted), len(hashes) - 1)
            hit = np.flatnonzero(hashes[pos] == wanted)
            idx = self._order[pos[hit]]
            for j, i, found in zip(hit.tolist(), idx.tolist(), self._base[idx].tolist(),
                                   strict=True):
                # a collision's first slot may hold another id: the slow path looks further
                out[j] = i if found == ext[j] else self._find(ext[j])
        if self._added:
            get = self._added_index.get
            for j in np.flatnonzero(out == UNKNOWN).tolist():
                out[j] = get(ext[j], UNKNOWN)
        return out

    def unknown(self, ext_ids: Iterable[str]) -> list[str]:
        """The ids not in the vocabulary, in order."""
        ext = list(ext_ids)
        return [e for e, i in zip(ext, self.indices(ext).tolist(), strict=True) if i == UNKNOWN]

    def id(self, idx: int) -> str:
        n = len(self._base)
        return str(self._base[idx]) if idx < n else self._added[idx - n]

    def ids(self, idx: Iterable[int] | np.ndarray) -> list[str]:
        idx = np.asarray(idx if isinstance(idx, np.ndarray) else list(idx), dtype=np.int64)
        n = len(self._base)
        if not self._added or not len(idx) or idx.max() < n:
            return self._base[idx].tolist()
        added = self._added
        return [str(self._base[i]) if i < n else added[i - n] for i in idx.tolist()]

    @property
    def all_ids(self) -> list[str]:
        return self._base.tolist() + self._added

    def add(self, ext: str) -> int:
        """Index of ``ext``, appending it if new (new users and upserted items)."""
        idx = self._find(ext)
        if idx == UNKNOWN:
            idx = len(self)
            self._added.append(ext)
            self._added_index[ext] = idx
        return idx

    @classmethod
    def from_values(cls, values: Iterable[str]) -> tuple[Vocabulary, np.ndarray]:
        """Vocabulary of the distinct values in first-seen order, plus the encoded values."""
        index: dict[str, int] = {}
        codes = np.fromiter((index.setdefault(str(v), len(index)) for v in values),
                            dtype=np.int64)
        return cls(list(index)), codes

    def save(self, path: Path) -> None:
        # A fixed-width unicode array loads without pickle (allow_pickle=False).
        ids = self.all_ids
        arr = np.asarray(ids, dtype=np.str_) if ids else np.zeros(0, dtype="<U1")
        with open(path, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls(np.load(path, allow_pickle=False))
