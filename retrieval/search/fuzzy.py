"""Typo tolerance: a bounded edit distance, the typo budget of a query token, and an index
that finds the indexed tokens within that budget without comparing against all of them.

Candidates come from a padded character-trigram index (the q-gram lemma bounds how many
trigrams a close token must share), then a length window and a character-set signature (one
edit flips at most two bits), and only then the banded, early-exit edit distance, which is
the only per-candidate Python loop.
"""

from __future__ import annotations

import numpy as np

MAX_FUZZY_LEN = 40  # longer tokens get no typo fallback


def levenshtein(a: str, b: str, max_dist: int) -> int:
    """Levenshtein distance between a and b, or ``max_dist + 1`` as soon as it must exceed
    ``max_dist`` (banded dynamic programme with early exit)."""
    big = max_dist + 1
    la, lb = len(a), len(b)
    if abs(la - lb) > max_dist:
        return big
    if la > lb:
        a, b, la, lb = b, a, lb, la
    prev = [j if j < big else big for j in range(lb + 1)]
    for i in range(1, la + 1):
        ca = a[i - 1]
        cur = [big] * (lb + 1)
        if i < big:
            cur[0] = i
        lo = max(1, i - max_dist)
        hi = min(lb, i + max_dist)
        best = cur[0]
        left = cur[lo - 1]
        for j in range(lo, hi + 1):
            v = prev[j - 1] + (ca != b[j - 1])
            if left + 1 < v:
                v = left + 1
            if prev[j] + 1 < v:
                v = prev[j] + 1
            if v > big:
                v = big
            cur[j] = left = v
            if v < best:
                best = v
        if best > max_dist:
            return big
        prev = cur
    return min(prev[lb], big)


def max_edits(token: str) -> int:
    """Typo budget for a query token: none for short tokens and numbers."""
    if len(token) < 3 or len(token) > MAX_FUZZY_LEN or token.isdigit():
        return 0
    return 1 if len(token) <= 4 else 2


def _trigrams(token: str) -> list[str]:
    """Padded trigrams, repeats numbered so set intersection counts like multisets."""
    padded = f"\x02\x02{token}\x03\x03"
    seen: dict[str, int] = {}
    grams = []
    for i in range(len(padded) - 2):
        g = padded[i:i + 3]
        n = seen.get(g, 0)
        seen[g] = n + 1
        grams.append(g if n == 0 else f"{g}\x00{n}")
    return grams


def _signature(token: str) -> int:
    """64-bit set of characters (hashed): one edit changes at most two bits."""
    sig = 0
    for c in token:
        sig |= 1 << (ord(c) % 64)
    return sig


_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(x: np.ndarray) -> np.ndarray:
    return _POPCOUNT8[x.view(np.uint8).reshape(-1, 8)].sum(axis=1)


class TypoIndex:
    """The set of indexed tokens, looked up by closeness rather than equality.

    Tokens get small integer ids (freed ids are reused, so a long-running server that keeps
    re-describing items does not grow its arrays); lengths and signatures sit in arrays by id
    so the candidate filters are vectorised. Not thread-safe: the owner serialises calls.
    """

    def __init__(self) -> None:
        self._token_id: dict[str, int] = {}
        self._token_str: list[str | None] = []
        self._free_ids: list[int] = []
        self._token_len = np.zeros(0, dtype=np.int32)
        self._token_sig = np.zeros(0, dtype=np.uint64)
        self._grams: dict[str, set[int]] = {}
        # Trigram postings as arrays, built on first lookup and dropped when they change:
        # lookups far outnumber changes.
        self._gram_arrays: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._token_id)

    def __contains__(self, token: object) -> bool:
        return token in self._token_id

    def add(self, token: str) -> None:
        """Make ``token`` findable; it must not be held already."""
        if self._free_ids:
            tid = self._free_ids.pop()
            self._token_str[tid] = token
        else:
            tid = len(self._token_str)
            self._token_str.append(token)
            if tid >= len(self._token_len):
                grow = max(64, 2 * len(self._token_len))
                self._token_len = np.resize(self._token_len, grow)
                self._token_sig = np.resize(self._token_sig, grow)
        self._token_id[token] = tid
        self._token_len[tid] = len(token)
        self._token_sig[tid] = _signature(token)
        for g in _trigrams(token):
            self._grams.setdefault(g, set()).add(tid)
            self._gram_arrays.pop(g, None)

    def remove(self, token: str) -> None:
        """Forget ``token``; it must be held."""
        tid = self._token_id.pop(token)
        self._token_str[tid] = None
        self._token_len[tid] = -100  # outside every length window
        self._free_ids.append(tid)
        for g in _trigrams(token):
            ids = self._grams[g]
            ids.discard(tid)
            self._gram_arrays.pop(g, None)
            if not ids:
                del self._grams[g]

    def _gram_ids(self, gram: str) -> np.ndarray | None:
        ids = self._gram_arrays.get(gram)
        if ids is None:
            held = self._grams.get(gram)
            if held is None:
                return None
            ids = np.fromiter(held, dtype=np.int64, count=len(held))
            self._gram_arrays[gram] = ids
        return ids

    def within(self, token: str, max_dist: int) -> list[tuple[str, int]]:
        """Held tokens within ``max_dist`` edits of ``token`` (itself excluded) and their
        distances, in no particular order: how to rank them is the caller's policy.

        Complete when ``max(len) + 2 > 3 * max_dist`` for every pair, as the budgets of
        ``max_edits`` guarantee: a candidate must share at least one trigram."""
        if max_dist <= 0:
            return []
        arrays = [a for g in _trigrams(token) if (a := self._gram_ids(g)) is not None]
        if not arrays:
            return []
        counts = np.bincount(np.concatenate(arrays), minlength=len(self._token_str))
        lq = len(token)
        lengths = self._token_len[: len(counts)]
        # q-gram lemma (padded, q=3): d edits destroy at most 3d of max(len)+2 trigrams.
        need = np.maximum(lengths, lq) + 2 - 3 * max_dist
        ok = (counts >= np.maximum(need, 1)) & (np.abs(lengths - lq) <= max_dist)
        cand = np.flatnonzero(ok)
        if len(cand):
            diff = np.bitwise_xor(self._token_sig[cand], np.uint64(_signature(token)))
            cand = cand[_popcount(diff) <= 2 * max_dist]
        found = []
        for tid in cand.tolist():
            other = self._token_str[tid]
            if other is None or other == token:
                continue
            d = levenshtein(token, other, max_dist)
            if d <= max_dist:
                found.append((other, d))
        return found
