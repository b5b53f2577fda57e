"""HNSW indices over item vectors (hnswlib), including exact maximum-inner-product search.

hnswlib's ``ip`` space is not a metric, so graph search over it can miss the true top inner
products. ``MipsIndex`` uses the norm-augmentation transform instead: every item vector y gets
an extra coordinate sqrt(M^2 - |y|^2) (M the largest norm) and the query gets 0, so that the L2
nearest neighbour in the augmented space is exactly the maximum inner product in the original.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import hnswlib
import numpy as np


class HnswIndex:
    """An hnswlib index whose labels are item indices; queries return (indices, distances)."""

    def __init__(self, index: hnswlib.Index, space: str, dim: int) -> None:
        self._index = index
        self.space = space
        self.dim = dim

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        space: str = "cosine",
        m: int = 16,
        ef_construction: int = 200,
        ef: int = 200,
        seed: int = 42,
        max_elements: int | None = None,
        insert_order: np.ndarray | None = None,
    ) -> HnswIndex:
        """Index ``vectors`` with labels 0..n-1, inserted in ``insert_order`` if given."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        index = hnswlib.Index(space=space, dim=dim)
        index.init_index(
            max_elements=max(max_elements or n, 1), ef_construction=ef_construction, M=m,
            random_seed=seed, allow_replace_deleted=False,
        )
        if n:
            labels = np.arange(n) if insert_order is None else np.asarray(insert_order)
            index.add_items(vectors[labels], labels, num_threads=1)
        index.set_ef(ef)
        return cls(index, space, dim)

    def __len__(self) -> int:
        return self._index.get_current_count()

    def add(self, vector: np.ndarray, label: int) -> None:
        """Add or replace one item (new items become searchable at once)."""
        if self._index.get_current_count() >= self._index.get_max_elements():
            self._index.resize_index(max(16, 2 * self._index.get_max_elements()))
        self._index.add_items(
            np.asarray(vector, dtype=np.float32).reshape(1, -1), np.array([label]),
            replace_deleted=False,
        )

    def query(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to k nearest items to one query vector, nearest first."""
        k = min(k, len(self))
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        # hnswlib searches with max(ef, k) by itself; raising ef here would stick and make
        # every later answer depend on the largest query seen before it.
        labels, dist = self._index.knn_query(
            np.asarray(vector, dtype=np.float32).reshape(1, -1), k=k, num_threads=1
        )
        return labels[0].astype(np.int64), dist[0]

    def save(self, path: Path) -> None:
        self._index.save_index(str(path))

    @classmethod
    def load(cls, path: Path, space: str, dim: int, ef: int = 200) -> HnswIndex:
        index = hnswlib.Index(space=space, dim=dim)
        index.load_index(str(path))
        index.set_ef(ef)
        return cls(index, space, dim)


def augment_items(vectors: np.ndarray) -> tuple[np.ndarray, float]:
    """Norm-augmented item vectors and the max norm M used to build them."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms_sq = np.einsum("ij,ij->i", vectors, vectors)
    max_sq = float(norms_sq.max()) if len(norms_sq) else 0.0
    extra = np.sqrt(np.maximum(max_sq - norms_sq, 0.0)).astype(np.float32)
    return np.hstack([vectors, extra[:, None]]), float(np.sqrt(max_sq))


class MipsIndex:
    """Maximum-inner-product search over item factors via norm augmentation + L2 HNSW."""

    def __init__(self, index: HnswIndex, factors: np.ndarray) -> None:
        self.index = index
        self.factors = factors

    @classmethod
    def build(cls, factors: np.ndarray, m: int = 16, ef_construction: int = 200,
              ef: int = 200, seed: int = 42) -> MipsIndex:
        augmented, _ = augment_items(factors)
        # Largest norms first: in the augmented space they are outliers (the best answers) that
        # later insertions would prune from every neighbour list, leaving them unreachable.
        order = np.argsort(-np.linalg.norm(augmented[:, :-1], axis=1), kind="stable")
        index = HnswIndex.build(augmented, "l2", m, ef_construction, ef, seed,
                                insert_order=order)
        return cls(index, factors)

    def query(self, user_vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items by inner product, with exact inner-product scores, best first."""
        q = np.append(np.asarray(user_vector, dtype=np.float32), np.float32(0.0))
        labels, _ = self.index.query(q, k)
        scores = self.factors[labels] @ np.asarray(user_vector, dtype=np.float32)
        order = np.argsort(-scores, kind="stable")
        return labels[order], scores[order]

    def save(self, path: Path) -> None:
        self.index.save(path)

    @classmethod
    def load(cls, path: Path, factors: np.ndarray, ef: int = 200) -> MipsIndex:
        return cls(HnswIndex.load(path, "l2", factors.shape[1] + 1, ef), factors)


class CosineIndex:
    """Nearest unit vectors by cosine (HNSW), scored by exact dot products, best first.

    Holds the vectors it indexes, like ``MipsIndex``, so both answer ``query`` with the same
    kind of score and a generator need not know which one it has.
    """

    def __init__(self, index: HnswIndex, vectors: np.ndarray) -> None:
        self.index = index
        self.vectors = vectors

    @classmethod
    def build(cls, vectors: np.ndarray, m: int = 16, ef_construction: int = 200,
              ef: int = 200, seed: int = 42) -> CosineIndex:
        return cls(HnswIndex.build(vectors, "cosine", m, ef_construction, ef, seed), vectors)

    def query(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        labels, _ = self.index.query(vector, k)
        scores = self.vectors[labels] @ np.asarray(vector, dtype=np.float32)
        order = np.argsort(-scores, kind="stable")
        return labels[order], scores[order]

    def add(self, vectors: np.ndarray, label: int) -> None:
        """Index row ``label`` of ``vectors`` (the grown array replaces the held one)."""
        self.vectors = vectors
        if np.linalg.norm(vectors[label]) > 0:
            self.index.add(vectors[label], label)

    def save(self, path: Path) -> None:
        self.index.save(path)

    @classmethod
    def load(cls, path: Path, vectors: np.ndarray, ef: int = 200) -> CosineIndex:
        return cls(HnswIndex.load(path, "cosine", vectors.shape[1], ef), vectors)


# Above this share of the catalog banned, an exact scan is cheaper than over-fetching.
EXACT_SHARE = 0.3
# Up to this many catalog entries (items x dimensions) an exact scan (one BLAS product, one
# argpartition) is cheaper than an HNSW search at ef 800, and always right: at 64 dimensions
# p50 0.32 ms against 0.44 for 30K items, about even at 50K (one BLAS thread; perf.ann, in
# docs/performance.md, "Exact scans of small catalogs").
EXACT_ENTRIES = 2_000_000


def top_k_allowed(index: CosineIndex | MipsIndex | None, vectors: np.ndarray,
                  query: np.ndarray, k: int,
                  banned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-k unbanned items by ``vectors @ query``: HNSW with over-fetch, or an exact scan.

    Banned items (history, filters) are removed by fetching ``k + |banned|`` neighbours; when
    that would be more than ``EXACT_SHARE`` of the catalog (wide filters, heavy users of small
    catalogs), or the catalog is small (``EXACT_ENTRIES``), a numpy scan is cheaper and always
    right. No Python callback runs in hnswlib.
    """
    n = len(vectors)
    banned = banned[:n]
    allowed = n - np.count_nonzero(banned)  # 6x cheaper than sum() on a bool mask
    k = min(k, allowed)
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    fetch = k + (n - allowed)
    small = n * (vectors.shape[1] if vectors.ndim > 1 else 1) <= EXACT_ENTRIES
    if index is not None and not small and fetch <= EXACT_SHARE * n:
        labels, scores = index.query(query, fetch)
        keep = ~banned[labels]
        labels, scores = labels[keep], scores[keep]
        if len(labels) >= k:
            order = np.argsort(-scores, kind="stable")[:k]
            return labels[order], scores[order].astype(np.float32)
    scores = (vectors @ query).astype(np.float64)
    scores[banned] = -np.inf
    idx = exact_top_k(scores, k)
    return idx, scores[idx].astype(np.float32)


# Scores held at once by ``top_k_allowed_many``: users per block x items (8M: 32 MB).
_BLOCK_SCORES = 8_000_000


def top_k_allowed_many(index: CosineIndex | MipsIndex | None, vectors: np.ndarray,
                       queries: Sequence[np.ndarray | None], k: int,
                       banned: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``top_k_allowed`` for many queries (None: nothing to propose), in order.

    Where each query would be an exact scan (no index, or a small catalog), a block of them
    is one matrix product: one pass over the item vectors per block instead of per query.
    Training scores tens of thousands of users this way (at 100K x 64 items a scan reads
    25 MB of vectors, so per user the scans were most of a tuning step); serving asks for
    one user at a time and keeps ``top_k_allowed``. HNSW queries stay one at a time.
    """
    n = len(vectors)
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
    small = n * (vectors.shape[1] if vectors.ndim > 1 else 1) <= EXACT_ENTRIES
    if (index is not None and not small) or n == 0:
        return [top_k_allowed(index, vectors, q, k, b) if q is not None else empty
                for q, b in zip(queries, banned, strict=True)]
    out: list[tuple[np.ndarray, np.ndarray]] = [empty] * len(queries)
    live = [i for i, q in enumerate(queries) if q is not None]
    block = max(1, _BLOCK_SCORES // n)
    for start in range(0, len(live), block):
        rows = live[start:start + block]
        # float32 products kept as they are: widening them (as the one-query path does)
        # changes no value and no order, and would double the memory the block streams
        scores = np.stack([queries[i] for i in rows]) @ vectors.T
        for row, i in zip(scores, rows, strict=True):
            mask = banned[i][:n]
            kk = min(k, n - np.count_nonzero(mask))
            if kk <= 0:
                continue
            row[mask] = -np.inf
            idx = exact_top_k(row, kk)
            out[i] = idx, row[idx].astype(np.float32)
    return out


def exact_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first (ties by lower index)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    # The k largest are the tail of an ascending partition: no negated copy of the scores,
    # and 1.2-1.6x faster at 100K items. NaN sorts last there, i.e. above every number, so
    # a NaN in that tail means the slow way: every number first, then NaN by index.
    n = len(scores)
    part = np.argpartition(scores, n - k)[n - k:]
    kth = scores[part].min()
    if kth == kth:  # argpartition breaks ties at the k-th score arbitrarily: take lowest indices
        above = np.flatnonzero(scores > kth)
        part = np.concatenate([above, np.flatnonzero(scores == kth)[: k - len(above)]])
    else:
        nan = np.isnan(scores)
        numbers = np.flatnonzero(~nan)
        if len(numbers) >= k:
            return numbers[exact_top_k(scores[numbers], k)]
        part = np.concatenate([numbers, np.flatnonzero(nan)[: k - len(numbers)]])
    return part[np.lexsort((part, -scores[part]))]
