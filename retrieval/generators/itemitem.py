"""Item-to-item generators: a sparse item x item weight matrix W, and a user's score for item j
is the sum over their history items h of strength(h) * W[h, j].

Two ways to fill W share the serving code: ``ItemKnnGenerator`` (cosine similarity of items'
user vectors, top neighbours per item) and ``EaseGenerator`` (Steck's EASE weights, kept to the
largest per item so the matrix stays sparse). Proposing costs one pass over the neighbour
lists of the user's items (history x neighbours entries), not over the catalog's pairs, so it
scales to catalogs where a dense items x items matrix would not fit.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from shortlist.common.catalog import ItemCatalog
from shortlist.common.threads import map_in_order
from shortlist.retrieval.ease import MAX_ITEMS, Ease
from shortlist.retrieval.ease import skipped as too_large
from shortlist.retrieval.generators.base import (
    FitData,
    Generator,
    HnswParams,
    UserState,
    refine_log_scale,
)
from shortlist.retrieval.weights import confidence

logger = logging.getLogger(__name__)

# Neighbour lists are computed for this many items at a time: a dense block of
# items x _BLOCK similarities (100K items: 100 MB) before the top-N of each column is kept.
_BLOCK = 256


def top_per_row(dense: np.ndarray, n: int, by_magnitude: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, values) of the ``n`` largest entries of each row (non-zero only)."""
    key = np.abs(dense) if by_magnitude else dense
    n = min(n, dense.shape[1])
    if n <= 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    cols = np.argpartition(-key, n - 1, axis=1)[:, :n]
    rows = np.repeat(np.arange(dense.shape[0]), n)
    cols = cols.ravel()
    vals = dense[rows, cols]
    keep = vals != 0
    return rows[keep], cols[keep], vals[keep].astype(np.float32)


def top_per_row_sparse(m: sp.csr_matrix, n: int, by_magnitude: bool = False
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``top_per_row`` of ``m`` read as the dense matrix it stands for (entries it does not
    store are zeros), without building that matrix: a row's stored entries are a few
    thousand of a 100K-item catalog's columns.

    The same entries as the dense version: by value, a row's implicit zeros rank above its
    negative entries (a negative is kept only when fewer than ``n`` columns are >= 0); ties
    at the n-th value go to the lower column, where the dense version's are arbitrary.
    """
    n_rows, n_cols = m.shape
    n = min(n, n_cols)
    if n <= 0 or m.nnz == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    rows = np.repeat(np.arange(n_rows), np.diff(m.indptr))
    cols, vals = m.indices.astype(np.int64), m.data
    nz = vals != 0
    rows, cols, vals = rows[nz], cols[nz], vals[nz]
    key = (np.abs(vals) if by_magnitude else vals).astype(np.float32)
    order = _best_first(rows, cols, key, n_rows, n_cols)
    rows, cols, vals, key = rows[order], cols[order], vals[order], key[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows)  # position within its row
    if not by_magnitude:
        neg = key < 0
        zeros = n_cols - np.bincount(rows, minlength=n_rows)
        rank = np.where(neg, rank + zeros[rows], rank)
    keep = rank < n
    return rows[keep], cols[keep], vals[keep].astype(np.float32)


def _best_first(rows: np.ndarray, cols: np.ndarray, key: np.ndarray, n_rows: int,
                n_cols: int) -> np.ndarray:
    """The order of entries by row, then ``key`` descending, then column.

    One sort of a packed 64-bit key (row | key's bits, order-preserving | column) when the
    three fit, which at a block of 256 rows x 100K columns they do: a third of the time of a
    three-key lexsort, which was half of an ItemKNN fit at 1M users."""
    row_bits, col_bits = (int(n_rows - 1).bit_length(), int(n_cols - 1).bit_length())
    if row_bits + 32 + col_bits > 64:
        return np.lexsort((cols, -key, rows))
    bits = key.view(np.uint32).astype(np.uint64)
    negative = bits >> np.uint64(31) == 1
    # IEEE floats order as integers once negatives have every bit flipped and positives the
    # sign bit; subtracting from the top turns ascending into descending
    ascending = np.where(negative, ~bits & np.uint64(0xFFFFFFFF), bits | np.uint64(1 << 31))
    descending = np.uint64(0xFFFFFFFF) - ascending
    packed = ((rows.astype(np.uint64) << np.uint64(32 + col_bits))
              | (descending << np.uint64(col_bits)) | cols.astype(np.uint64))
    return np.argsort(packed)


def pruned(block: Callable[[int, int], np.ndarray | sp.csr_matrix], n: int, keep: int,
           by_magnitude: bool = False, n_cols: int | None = None) -> sp.csr_matrix:
    """An n x n (or n x ``n_cols``) CSR keeping the ``keep`` largest entries of each row,
    from row blocks ``block(start, end)`` computed ``_BLOCK`` rows at a time (never the
    whole matrix)."""
    return pruned_each(block, n, [keep], by_magnitude, n_cols)[0]


def pruned_each(block: Callable[[int, int], np.ndarray | sp.csr_matrix], n: int,
                keeps: list[int], by_magnitude: bool = False,
                n_cols: int | None = None) -> list[sp.csr_matrix]:
    """``pruned`` for each count in ``keeps``, computing each block once: the block is the
    costly part, the pruning cheap. Blocks may be dense arrays or sparse CSR rows."""
    def pruned_block(s: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        b = block(s, min(n, s + _BLOCK))
        top = top_per_row_sparse if sp.issparse(b) else top_per_row
        return [top(b, keep, by_magnitude) for keep in keeps]

    parts: list[tuple[list, list, list]] = [([], [], []) for _ in keeps]
    # Blocks are independent and their heavy parts (scipy's sparse products, numpy's sorts)
    # release the GIL, so FIT_THREADS of them run at once, each holding its block's
    # similarities (ItemKNN at 1M users: 83.8 -> 45.8 s, peak +78 MB). Results are taken in
    # block order, so the matrices are the same for any thread count.
    starts = range(0, n, _BLOCK)
    for s, tops in zip(starts, map_in_order(pruned_block, starts, first_alone=False),
                       strict=True):
        for (r, c, v), (rows, cols, vals) in zip(tops, parts, strict=True):
            rows.append(r + s)
            cols.append(c)
            vals.append(v)
    return [sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(n, n if n_cols is None else n_cols), dtype=np.float32)
            for rows, cols, vals in parts]


class ItemItemGenerator(Generator):
    """Serving half shared by the item-item generators: W as CSR, rows = source items."""

    def __init__(self, weights: sp.csr_matrix, config: Any) -> None:
        self.weights = weights
        self.config = config

    def scores(self, user: UserState) -> tuple[np.ndarray, np.ndarray] | None:
        """(items, scores) of every item with a non-zero score for the user, items sorted;
        memoised for the request.

        Only the neighbours of the user's items can score, so proposing and filtering work on
        those (a few thousand) rather than on the whole catalog.
        """
        key = self.name
        if key not in user.memo:
            w = self.weights
            found = self.sources(user)
            if found is None:
                user.memo[key] = None
            else:
                uniq, strength = found
                dense = weighted_row_sum(w, uniq, strength)
                # no opinion is not a proposal; through a mask, because numpy's nonzero
                # of a float array is 5-8x slower than of a bool one (0.5-0.8 ms at 100K
                # items, per request and generator)
                targets = np.flatnonzero(dense != 0)
                user.memo[key] = (targets, dense[targets])
        return user.memo[key]

    def sources(self, user: UserState) -> tuple[np.ndarray, np.ndarray] | None:
        """The user's distinct items that W has rows for, and how strongly each counts; None
        when there are none. Here: every history item, by its event's confidence."""
        known = user.items < self.weights.shape[0]
        items = user.items[known]
        if len(items) == 0:
            return None
        # a negative event (a dislike) subtracts its neighbours' similarity
        weights = user.weights[known]
        strength = confidence(np.abs(weights), self.config.confidence) * np.where(
            weights < 0, -1.0, 1.0)
        # one strength per distinct item (the latest event of a repeated item counts)
        uniq, last = np.unique(items[::-1], return_index=True)
        return uniq, strength[::-1][last]

    def propose(self, user: UserState, k: int,
                banned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = self.scores(user)
        if found is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        items, scores = found
        ok = ~banned[items]
        items, scores = items[ok], scores[ok]
        top = np.lexsort((items, -scores))[:k]  # best first, ties to the lower index
        return items[top], scores[top].astype(np.float32)

    def affinity(self, user: UserState, items: np.ndarray) -> np.ndarray | None:
        found = self.scores(user)
        if found is None:
            return None
        targets, scores = found
        out = np.zeros(len(items), np.float32)
        if len(targets) == 0:
            return out
        pos = np.minimum(np.searchsorted(targets, items), len(targets) - 1)
        hit = targets[pos] == items
        out[hit] = scores[pos[hit]]
        return out

    def similar_items(self, item: int, k: int,
                      banned: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        return None  # content similarity answers "similar items"; behaviour feeds candidates

    def add_item(self, idx: int, document: str) -> None:
        """A new item has no neighbours yet; the matrix grows so indices stay valid."""
        w = self.weights
        if idx >= w.shape[0]:
            extra = idx + 1 - w.shape[0]
            indptr = np.concatenate([w.indptr, np.full(extra, w.indptr[-1])])
            self.weights = sp.csr_matrix((w.data, w.indices, indptr), shape=(idx + 1, idx + 1))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        save_csr(directory / "weights.npz", self.weights)

    @classmethod
    def load(cls, directory: Path, config: Any, catalog: ItemCatalog,
             hnsw: HnswParams) -> ItemItemGenerator:
        return cls(load_csr(directory / "weights.npz"), config)


# Above this many entries scipy's row slice and transposed product (a C loop, ~0.25 ms of fixed
# overhead) beat gathering the entries in numpy; measured on 1.5K- and 10K-item matrices.
_SCIPY_ENTRIES = 16_384


def weighted_row_sum(w: sp.csr_matrix, rows: np.ndarray, strength: np.ndarray) -> np.ndarray:
    """sum_r strength[r] * w[rows[r]] as a dense vector (float64) over w's columns."""
    starts = w.indptr[rows]
    lengths = w.indptr[rows + 1] - starts
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if len(ends) else 0
    if total > _SCIPY_ENTRIES:
        return np.asarray(w[rows].T @ strength.astype(np.float64)).ravel()
    flat = np.arange(total) + np.repeat(starts - (ends - lengths), lengths)
    return np.bincount(w.indices[flat], weights=w.data[flat] * np.repeat(strength, lengths),
                       minlength=w.shape[1])


def save_csr(path: Path, m: sp.csr_matrix) -> None:
    """A CSR matrix as plain arrays in one .npz (no pickle)."""
    np.savez(path, indptr=m.indptr, indices=m.indices, data=m.data, shape=np.asarray(m.shape))


def load_csr(path: Path) -> sp.csr_matrix:
    with np.load(path, allow_pickle=False) as z:
        return sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))


def user_item_matrix(data: FitData, transform: str) -> sp.csr_matrix:
    ev = data.events
    x = sp.csr_matrix((confidence(ev.weights, transform), (ev.users, ev.items)),
                      shape=(data.n_users, len(data.catalog)), dtype=np.float32)
    x.sum_duplicates()
    x.eliminate_zeros()
    return x


@dataclass
class ItemKnnConfig:
    candidates: int = 100
    light_factor: float = 1.0
    neighbours: int = 100  # kept per item
    # Shrinks the similarity of item pairs with few users in common (Koren's shrinkage):
    # cos * co / (co + shrink). 0: plain cosine.
    shrinkage: float = 10.0
    confidence: str = "binary"


class ItemKnnGenerator(ItemItemGenerator):
    """Cosine ItemKNN: people who engaged with your items engaged with these."""

    name = "itemknn"
    Config = ItemKnnConfig
    objective = "ndcg"

    @classmethod
    def fit(cls, data: FitData, config: ItemKnnConfig,
            previous: Generator | None = None) -> ItemKnnGenerator | None:
        return next(cls.fit_each(data, [config], previous))

    @classmethod
    def fit_each(cls, data: FitData, configs: Iterable[ItemKnnConfig],
                 previous: Generator | None = None) -> Iterator[ItemKnnGenerator | None]:
        """The similarities depend on the confidence transform and the shrinkage only:
        consecutive configs that differ in the neighbours kept share one pass over the
        blocks (the costly part), each pruned to its own count."""
        for _, same in itertools.groupby(configs, key=lambda c: (c.confidence, c.shrinkage)):
            group = list(same)
            weights = cls._similarities(data, group[0], [c.neighbours for c in group])
            for config in group:
                yield None if weights is None else cls(weights.pop(0), config)

    @staticmethod
    def _similarities(data: FitData, config: ItemKnnConfig,
                      keeps: list[int]) -> list[sp.csr_matrix] | None:
        x = user_item_matrix(data, config.confidence)
        if x.nnz == 0:
            logger.warning("itemknn generator skipped: no positive interactions")
            return None
        n = x.shape[1]
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        norms[norms == 0] = 1.0
        # The right operands stay CSR: scipy converts a CSC right operand to CSR on every
        # product, which was 78% of a fit at 1M users (the whole matrix, once per block).
        xt = x.T.tocsr()
        # Binary confidence: x is its own 0/1 pattern, so the co-occurrence counts are the
        # similarity products themselves, not a second product per block (nor two more
        # copies of the matrix: 280 MB at 20M events).
        counted = bool((x.data == 1).all())
        if not counted:
            binary = x.copy()
            binary.data[:] = 1.0
            bt = binary.T.tocsr()

        def block(s: int, e: int) -> sp.csr_matrix:
            # sparse: only the pairs of items some user has in common (a few thousand of a
            # 100K-item row), where a dense block of items x catalog cost ~90 s per fit at
            # 100K items whatever the data
            sims = (xt[s:e] @ x).tocsr()
            sims.sum_duplicates()
            rows = np.repeat(np.arange(e - s), np.diff(sims.indptr)) + s
            raw = sims.data
            sims.data = (raw / (norms[rows] * norms[sims.indices])).astype(np.float32)
            if config.shrinkage > 0 and counted:
                sims.data = sims.data * (raw / (raw + np.float32(config.shrinkage)))
            elif config.shrinkage > 0:
                co = (bt[s:e] @ binary).tocsr()
                co.data = co.data / (co.data + np.float32(config.shrinkage))
                sims = sims.multiply(co).tocsr()  # co covers every pair sims has
                rows = np.repeat(np.arange(e - s), np.diff(sims.indptr)) + s
            sims.data[sims.indices == rows] = 0.0  # an item is not its own neighbour
            return sims

        return pruned_each(block, n, keeps)

    @classmethod
    def tuning_grid(cls, config: ItemKnnConfig) -> list[dict[str, Any]]:
        # neighbours innermost: fit_each computes each (shrinkage, confidence) once
        return [{"neighbours": nb, "shrinkage": sh, "confidence": c}
                for sh in (0.0, 10.0) for c in ("binary", "log1p") for nb in (50, 200)]


@dataclass
class EaseConfig:
    candidates: int = 100
    light_factor: float = 1.0
    lam: float = 300.0
    # Above this many items EASE is not fitted: its dense items x items inverse needs
    # ~12 bytes x items² of memory (30K items: 10.8 GB) and hours of one core.
    max_items: int = MAX_ITEMS
    # Weights kept per item (largest magnitude): EASE's B is dense, the served one sparse.
    # 0: as many as max_weights allows (every one for a catalog up to sqrt(max_weights)).
    # Tuned: pruning to 200 per item cost 8% of test NDCG@10 on a 9,742-item catalog, and
    # gained 12% on a 1,682-item one.
    neighbours: int = 0
    # Weights kept in all (8 bytes each in the served CSR: 20M is 160 MB of retrieval memory)
    max_weights: int = 20_000_000
    confidence: str = "binary"


class EaseGenerator(ItemItemGenerator):
    """EASE (Steck 2019), the best linear item-item model, pruned to a sparse matrix."""

    name = "ease"
    Config = EaseConfig
    objective = "ndcg"

    @classmethod
    def fit(cls, data: FitData, config: EaseConfig,
            previous: Generator | None = None) -> EaseGenerator | None:
        return next(cls.fit_each(data, [config], previous))

    @classmethod
    def fit_each(cls, data: FitData, configs: Iterable[EaseConfig],
                 previous: Generator | None = None) -> Iterator[EaseGenerator | None]:
        """The dense B depends only on λ, the confidence transform and the catalog limit:
        consecutive configs that differ only in the weights kept share one inverse (the
        costly part: ~25 s at 10K items), and only one B is held at a time."""
        n = len(data.catalog)
        key, model = None, None
        for config in configs:
            if (config.lam, config.confidence, config.max_items) != key:
                key, model = (config.lam, config.confidence, config.max_items), None
                # the limit is checked before the user x item matrix is built: at 20M
                # events that matrix is 0.34 GB, built only to be refused
                reason = too_large(n, config.max_items)
                if reason is None:
                    x = user_item_matrix(data, config.confidence)
                    model = Ease(max_items=config.max_items).fit(x, config.lam, values=True)
                    del x
                else:
                    logger.warning("ease generator skipped: %s (raise its max_items setting "
                                   "to fit it anyway)", reason)
            if model is None:
                yield None
                continue
            keep = config.neighbours or max(1, config.max_weights // max(1, n))
            yield cls(pruned(lambda s, e, b=model.weights: b[s:e], n, keep, by_magnitude=True),
                      config)

    @classmethod
    def tuning_grid(cls, config: EaseConfig) -> list[dict[str, Any]]:
        # weights kept per item innermost, so fit_each shares each inverse across them;
        # fewer can act as regularisation (ml-100k: 200 beat all 1,682 on validation and test)
        return [{"lam": lam, "confidence": c, "neighbours": nb}
                for lam in (30.0, 100.0, 300.0, 1000.0, 3000.0) for c in ("binary", "log1p")
                for nb in (50, 200, 0)]

    @classmethod
    def refine_grid(cls, best: dict[str, Any], tried: list[dict[str, Any]], rounds: int = 1
                    ) -> list[dict[str, Any]]:
        # λ's optimum moves with the data's density (10 on insteval, 200 on a dense synth set,
        # chosen by the peer's finer grid) and the coarse grid's steps of ~3x cost up to 2.5%
        # of NDCG@10 there: half steps around the best, and one past the edge (three
        # inverses), once: a third round would halve steps that no longer matter
        return refine_log_scale(best, tried, "lam") if rounds == 1 else []
