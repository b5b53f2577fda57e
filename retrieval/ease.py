"""EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019): the item-item
weight matrix B of the closed form G = XᵀX + λI, P = G⁻¹, B = -P / diag(P) column-wise with
diag(B) = 0; a user's scores are X_u @ B.

It needs the full inverse of an items x items matrix, so it is refused above ``MAX_ITEMS``
items. Inverses are taken in float64 with LAPACK's Cholesky routines (dpotrf then dpotri, in
place: G is symmetric positive definite for λ > 0), ~3x faster than ``np.linalg.inv`` and ~2x
faster than ``cho_solve`` on the identity; B is kept in float32. With far fewer users than
items (ml-latest-small: 610 x 9742) the Woodbury identity gives the same B from a users x users
inverse: ~1.5 s instead of ~25 s single-threaded there. The number of BLAS threads is the
caller's business (OPENBLAS_NUM_THREADS). Plain numpy/scipy, no I/O: the leaderboard's peer
and the retrieval generator both use it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from shortlist.retrieval.hnsw import exact_top_k

# B is items² float32 plus an items² float64 workspace (~10.8 GB at 30K items), and building it
# costs ~items² x users flops: above 20K items that is hours on one core.
MAX_ITEMS = 20_000
_BLOCK = 2048


class EaseTooLarge(ValueError):
    """The catalog is too large for EASE's dense items x items matrices."""


def skipped(n_items: int, max_items: int = MAX_ITEMS) -> str | None:
    """Why EASE cannot run on ``n_items`` items, or None when it can."""
    if n_items > max_items:
        need = n_items * n_items * 12 / 1e9
        return (f"EASE skipped: {n_items} items > {max_items} (dense items x items "
                f"matrices, ~{need:.1f} GB)")
    return None


def _binary(user_items) -> sp.csr_matrix:
    m = sp.csr_matrix(user_items, dtype=np.float32, copy=True)
    m.sum_duplicates()
    m.eliminate_zeros()
    m.data[:] = 1.0
    return m


def _gram(x: sp.csr_matrix, block: int = _BLOCK) -> np.ndarray:
    """XᵀX as a dense float64 Fortran-ordered array, built a block of columns at a time."""
    n = x.shape[1]
    x64 = x.astype(np.float64)
    xt = x64.T.tocsr()
    g = np.zeros((n, n), dtype=np.float64, order="F")
    for s in range(0, n, block):
        e = min(n, s + block)
        # Rows s:e of the symmetric G are its columns s:e; toarray(out=) adds into the zeros.
        (xt[s:e] @ x64).T.toarray(out=g[:, s:e])
    return g


def _fill_lower(p: np.ndarray, block: int = _BLOCK) -> None:
    """Copy the upper triangle of ``p`` onto its lower triangle, in place."""
    n = p.shape[0]
    for s in range(0, n, block):
        e = min(n, s + block)
        p[e:, s:e] = p[s:e, e:].T
        diag = p[s:e, s:e]
        lower = np.tril_indices(e - s, -1)
        diag[lower] = diag.T[lower]


def _spd_inverse(a: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite Fortran-ordered float64 matrix, computed in
    place (``a`` is overwritten and returned): Cholesky factor, then inverse from it."""
    c, info = lapack.dpotrf(a, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"matrix is not positive definite (dpotrf {info})")
    p, info = lapack.dpotri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"matrix is singular (dpotri {info})")
    _fill_lower(p)
    return p


def _ease_cholesky(x: sp.csr_matrix, lam: float) -> np.ndarray:
    """B (diagonal not yet zeroed) from P = (XᵀX + λI)⁻¹: B[i, j] = -P[i, j] / P[j, j]."""
    n = x.shape[1]
    p = _gram(x)
    p[np.diag_indices(n)] += lam
    p = _spd_inverse(p)
    neg_diag = -np.diag(p).copy()
    b = np.empty((n, n), dtype=np.float32)
    for s in range(0, n, _BLOCK):
        # P is symmetric and Fortran-ordered: rows s:e are read as the contiguous columns s:e.
        b[s:s + _BLOCK] = p[:, s:s + _BLOCK].T / neg_diag
    return b


def _ease_woodbury(x: sp.csr_matrix, lam: float) -> np.ndarray:
    """The same B through Woodbury: P = (I - M) / λ with M = Xᵀ(λI + XXᵀ)⁻¹X, so off the
    diagonal B[i, j] = M[i, j] / (1 - M[j, j]). Only a users x users matrix is inverted and
    M is built a block of rows at a time straight into float32 B."""
    m, n = x.shape
    x64 = x.astype(np.float64)
    xt = x64.T.tocsr()  # items x users
    k = _gram(xt)  # XXᵀ, users x users
    k[np.diag_indices(m)] += lam
    k = _spd_inverse(k)
    kx = np.ascontiguousarray((xt @ k).T)  # K X (K symmetric), users x items
    del k
    one_minus = 1.0 - np.asarray(x64.multiply(kx).sum(axis=0)).ravel()  # 1 - diag(M)
    b = np.empty((n, n), dtype=np.float32)
    for s in range(0, n, _BLOCK):
        b[s:s + _BLOCK] = (xt[s:s + _BLOCK] @ kx) / one_minus
    return b


class Ease:
    """EASE item-item model: ``fit`` on a binary user x item matrix, then score or recommend."""

    def __init__(self, max_items: int = MAX_ITEMS) -> None:
        self.max_items = max_items
        self.lam = 0.0
        self.weights = np.zeros((0, 0), dtype=np.float32)  # B, items x items
        self.user_items = sp.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, user_items, lam: float, method: str = "auto", values: bool = False) -> Ease:
        """Fit on a users x items matrix, binarised unless ``values`` (then its entries are
        the strengths). ``method``: "cholesky" inverts the items x items G; "woodbury"
        inverts the users x users λI + XXᵀ instead (the same B, far cheaper when there are
        far fewer users than items); "auto" picks."""
        reason = skipped(user_items.shape[1], self.max_items)
        if reason:
            raise EaseTooLarge(reason)
        if not lam > 0:
            raise ValueError(f"EASE needs lam > 0, got {lam}")
        if method not in ("auto", "cholesky", "woodbury"):
            raise ValueError(f"unknown EASE method {method!r}")
        if values:
            x = sp.csr_matrix(user_items, dtype=np.float32, copy=True)
            x.sum_duplicates()
            x.eliminate_zeros()
        else:
            x = _binary(user_items)
        if method == "auto":
            # Woodbury costs ~users³ + nnz·items instead of items³, and never more memory
            # than the Cholesky path while users <= items / 2.
            method = "woodbury" if 2 * x.shape[0] <= x.shape[1] else "cholesky"
        b = _ease_woodbury(x, lam) if method == "woodbury" else _ease_cholesky(x, lam)
        np.fill_diagonal(b, 0.0)
        self.lam, self.weights, self.user_items = float(lam), b, x
        return self

    def scores(self, user_rows) -> np.ndarray:
        """Dense float32 scores, one row per user: rows of a user x item matrix (sparse, any
        values are binarised) or indices of users in the fitted matrix."""
        if sp.issparse(user_rows):
            x = _binary(user_rows)
        else:
            x = self.user_items[np.atleast_1d(np.asarray(user_rows, dtype=np.int64))]
        return np.asarray(x @ self.weights, dtype=np.float32)

    def recommend(self, user: int, k: int,
                  exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items for a fitted user, best first, never an item where ``exclude`` is set."""
        s = self.scores([user])[0]
        if exclude is not None:
            s[np.asarray(exclude, dtype=bool)] = -np.inf
        top = exact_top_k(s, k)
        top = top[np.isfinite(s[top])]
        return top, s[top]
