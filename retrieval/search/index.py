"""The item index: BM25 over titles (and, weaker, tags/text and categories), the typo
fallback, exact-title boosts and an optional content-vector blend.

Pure domain code: no gRPC, no I/O. Everything is kept in mutable in-memory indices so an item
upserted at serving time (``add``) is findable by the next query.

Scoring, per query:

1. Each distinct query token that is indexed contributes ``idf * w`` to the items whose posting
   holds it, where ``w`` is the BM25F-style field-weighted term weight computed at index time
   (title 1.0 with length normalisation, text/tags 0.35, categories 0.25).
2. A token that matches no indexed token exactly (and is long enough, and not a number) is
   expanded to indexed tokens within a small Levenshtein distance (1 for 3-4 characters, 2 for
   longer; see ``fuzzy``). Expansions score ``0.8 * idf * w`` at the smallest distance found,
   half that further away; per item only the best expansion of a token counts.
3. The sum is multiplied by the idf-weighted share of query tokens the item matched, and scaled
   so the best item scores 1.
4. MovieLens titles ("Godfather, The (1972)") get normalised title keys (``text.title_keys``):
   year dropped, trailing article moved to the front and also dropped, alternative titles in
   parentheses ("a.k.a.") as extra keys. A query (or its typo-corrected form) equal to a key
   adds ``EXACT_BONUS``; a key that starts with the query adds ``PREFIX_BONUS``.
5. With a content model, ``BLEND * cosine(query, item)`` is added (the corrected query is
   embedded with the model's ``embed``), which breaks ties; when fewer than ``k`` items match
   lexically, related items fill in at ``BLEND * cosine`` (at most BLEND, below good matches),
   by cosine to the query vector plus the best lexical hits' vectors (pseudo-relevance
   feedback), if at least ``RELATED_MIN_COSINE``.

Ties are broken by lower item index. ``fuzzy`` is True when any returned item owes its place
to the typo fallback.

The item vectors of step 5 are not search's: it reads the content model's own ``vectors`` at
query time (see ``ContentSpace``), so the catalog is embedded once, by whoever owns the model.
"""

from __future__ import annotations

import math
import threading
from typing import Protocol

import numpy as np

from shortlist.retrieval.hnsw import exact_top_k
from shortlist.retrieval.search.fuzzy import TypoIndex, max_edits
from shortlist.retrieval.search.text import document_tokens, key_forms, query_tokens, title_keys

TITLE_WEIGHT = 1.0
TEXT_WEIGHT = 0.35
CATEGORY_WEIGHT = 0.25
K1 = 1.2
B = 0.75
FUZZY_FACTOR = 0.8  # expansions at the smallest distance found for a token
FUZZY_FAR_FACTOR = 0.4  # expansions further away than that
MAX_EXPANSIONS = 32
EXACT_BONUS = 0.5
PREFIX_BONUS = 0.2
BLEND = 0.15
RELATED_MIN_COSINE = 0.3
RERANK_POOL = 200
MAX_QUERY_TOKENS = 32  # distinct tokens of a query that are used; the rest are ignored
FEEDBACK_ITEMS = 3


class ContentSpace(Protocol):
    """What search needs of a content model (``ContentModel`` is one).

    ``vectors`` holds one unit vector per item index and belongs to the model's owner (in
    serving, the content generator), which embeds the catalog at fit time and each upserted
    item before search indexes it. The owner may update rows in place or replace the array
    with a larger one, so search holds the model and reads ``vectors`` once per query, never
    a copy of the array. Items the vectors do not (yet) cover score as if their vector were
    zero: no blend, never a related item.
    """

    vectors: np.ndarray

    def embed(self, documents: list[str]) -> np.ndarray:
        """Unit vectors for new documents in the items' space (all-zero if nothing known)."""
        ...


def _bm25_tf(tf: int, length: int, avg: float) -> float:
    return tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * length / avg))


def _item_weights(title: str, text: str, categories: list[str], avg_title: float,
                  avg_text: float) -> dict[str, float]:
    """token -> field-weighted BM25 term weight (idf is applied at query time, because it
    changes as items are added and indexed weights must not)."""
    weights: dict[str, float] = {}
    for field_weight, tokens, avg in (
        (TITLE_WEIGHT, document_tokens(title), avg_title),
        (TEXT_WEIGHT, document_tokens(text), avg_text),
    ):
        counts: dict[str, int] = {}
        for t in tokens:
            counts[t] = counts.get(t, 0) + 1
        for t, tf in counts.items():
            weights[t] = weights.get(t, 0.0) + field_weight * _bm25_tf(tf, len(tokens), avg)
    for t in {t for c in categories for t in document_tokens(c)}:
        weights[t] = weights.get(t, 0.0) + CATEGORY_WEIGHT
    return weights


class ItemSearch:
    """Lexical + typo-tolerant + content-blended search over item indices 0..n-1.

    Thread-safe: ``add`` and ``search`` serialise on an internal lock. The content model's
    vectors are read without it (their owner updates them under its own write discipline),
    so a query racing an upsert may blend the item's new vector with its old text.
    """

    def __init__(self, content: ContentSpace | None = None, avg_title_len: float = 4.0,
                 avg_text_len: float = 8.0) -> None:
        self.content = content
        self._avg_title = max(avg_title_len, 1.0)
        self._avg_text = max(avg_text_len, 1.0)
        self._lock = threading.RLock()
        self._n = 0
        self._live = 0  # items with at least one token (the N of idf)
        self._forward: list[dict[str, float]] = []
        self._postings: dict[str, dict[int, float]] = {}
        self._posting_arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._item_keys: list[set[str]] = []
        self._keys: dict[str, set[int]] = {}
        self._typos = TypoIndex()

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(cls, titles: list[str], texts: list[str] | None, categories: list[list[str]],
              content: ContentSpace | None = None) -> ItemSearch:
        """Index items 0..len(titles)-1. ``texts`` may be None or shorter (missing = "").

        ``content`` is shared, not copied: its vectors should already cover every item (the
        content generator fits one per catalog item); items beyond them get no blend."""
        n = len(titles)
        texts = list(texts or [])
        texts += [""] * (n - len(texts))
        cats = list(categories) + [[]] * (n - len(categories))
        title_lens = [len(document_tokens(t)) for t in titles]
        text_lens = [len(document_tokens(t)) for t in texts[:n]]
        with_text = [x for x in text_lens if x]
        search = cls(
            content,
            avg_title_len=float(np.mean(title_lens)) if n else 4.0,
            avg_text_len=float(np.mean(with_text)) if with_text else 8.0,
        )
        for i in range(n):
            search._index(i, titles[i], texts[i], cats[i])
        return search

    def __len__(self) -> int:
        return self._n

    def add(self, idx: int, title: str, text: str = "",
            categories: list[str] | None = None) -> None:
        """Index a new item or replace an existing one's title/text/categories. Searchable as
        soon as this returns. Its content vector is the content model owner's to update,
        before this call, so the blend sees the item as soon as its text does."""
        if idx < 0:
            raise ValueError(f"item index must be >= 0, got {idx}")
        categories = list(categories or [])
        with self._lock:
            self._index(idx, title, text, categories)

    def _index(self, idx: int, title: str, text: str, categories: list[str]) -> None:
        while self._n <= idx:
            self._forward.append({})
            self._item_keys.append(set())
            self._n += 1
        self._unindex(idx)
        weights = _item_weights(title, text, categories, self._avg_title, self._avg_text)
        self._forward[idx] = weights
        if weights:
            self._live += 1
        for token, w in weights.items():
            posting = self._postings.get(token)
            if posting is None:
                posting = self._postings[token] = {}
                self._typos.add(token)
            posting[idx] = w
            self._posting_arrays.pop(token, None)
        keys = title_keys(title)
        self._item_keys[idx] = keys
        for key in keys:
            self._keys.setdefault(key, set()).add(idx)

    def _unindex(self, idx: int) -> None:
        old = self._forward[idx]
        if old:
            self._live -= 1
        for token in old:
            posting = self._postings[token]
            del posting[idx]
            self._posting_arrays.pop(token, None)
            if not posting:
                del self._postings[token]
                self._typos.remove(token)
        self._forward[idx] = {}
        for key in self._item_keys[idx]:
            holders = self._keys[key]
            holders.discard(idx)
            if not holders:
                del self._keys[key]
        self._item_keys[idx] = set()

    # ------------------------------------------------------------------ lookups

    def _posting(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        arrays = self._posting_arrays.get(token)
        if arrays is None:
            posting = self._postings[token]
            arrays = (np.fromiter(posting.keys(), dtype=np.int64, count=len(posting)),
                      np.fromiter(posting.values(), dtype=np.float64, count=len(posting)))
            self._posting_arrays[token] = arrays
        return arrays

    def _idf(self, token: str) -> float:
        df = len(self._postings[token])
        return math.log(1.0 + (self._live - df + 0.5) / (df + 0.5))

    def similar_tokens(self, token: str, max_dist: int) -> list[tuple[str, int]]:
        """Indexed tokens within ``max_dist`` edits of ``token`` (itself excluded), closest
        first, then by document frequency, then alphabetically."""
        if max_dist <= 0:
            return []
        with self._lock:
            return self._similar(token, max_dist)

    def _similar(self, token: str, max_dist: int) -> list[tuple[str, int]]:
        # Among equally close tokens the commoner one is the likelier intended word.
        found = self._typos.within(token, max_dist)
        found.sort(key=lambda td: (td[1], -len(self._postings[td[0]]), td[0]))
        return found

    def _item_vectors(self, n: int) -> np.ndarray | None:
        """The content vectors of items 0..n-1 that the model has (possibly fewer than n),
        or None without a usable content model. Read once per query: the owner may swap in
        a larger array at any moment, and one query must use one array throughout."""
        if self.content is None:
            return None
        vectors = self.content.vectors
        if vectors.shape[1] == 0:
            return None
        return vectors[:n]

    # ------------------------------------------------------------------ search

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Up to k distinct item indices, best first, their scores, and whether the typo
        fallback produced any of them. Empty arrays if the query has no usable token."""
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), False)
        tokens = list(dict.fromkeys(query_tokens(query)))[:MAX_QUERY_TOKENS]
        if k <= 0 or not tokens:
            return empty
        with self._lock:
            n = self._n
            if n == 0:
                return empty
            total = np.zeros(n, dtype=np.float64)
            matched = np.zeros(n, dtype=np.float64)
            from_fuzzy = np.zeros(n, dtype=bool)
            query_weight = 0.0
            corrected = []
            for token in tokens:
                if token in self._postings:
                    idf = self._idf(token)
                    idx, w = self._posting(token)
                    total[idx] += idf * w
                    matched[idx] += idf
                    query_weight += idf
                    corrected.append(token)
                    continue
                expansions = self._similar(token, max_edits(token))[:MAX_EXPANSIONS]
                if not expansions:
                    continue
                best = np.zeros(n, dtype=np.float64)
                d_min = expansions[0][1]
                top_weight = 0.0
                for other, d in expansions:
                    factor = FUZZY_FACTOR if d == d_min else FUZZY_FAR_FACTOR
                    idf = self._idf(other)
                    top_weight = max(top_weight, factor * idf)
                    idx, w = self._posting(other)
                    np.maximum.at(best, idx, factor * idf * w)
                hit = best > 0
                total += best
                matched[hit] += top_weight
                from_fuzzy |= hit
                query_weight += top_weight
                corrected.append(expansions[0][0])
            if not corrected:
                return empty
            lexical = np.flatnonzero(total > 0)
            score = np.zeros(n, dtype=np.float64)
            if len(lexical):
                lex = total[lexical] * (matched[lexical] / query_weight)
                score[lexical] = lex / lex.max()
            pool = self._bonus(score, lexical, tokens, corrected)
            related = np.zeros(0, dtype=np.int64)
            vectors = self._item_vectors(n)
            qv = self._query_vector(" ".join(corrected)) if vectors is not None else None
            if qv is not None:
                covered = pool[pool < len(vectors)]
                score[covered] += BLEND * np.maximum(vectors[covered] @ qv, 0.0)
                if len(pool) < k:
                    related = self._related(vectors, qv, pool, score, k - len(pool))
                    pool = np.concatenate([pool, related])
            if not len(pool):
                return empty
            final = score[pool].astype(np.float32)
            order = np.lexsort((pool, -final))[:k]
            items, scores = pool[order].astype(np.int64), final[order]
            fuzzy = bool(from_fuzzy[items].any())
            if not fuzzy and corrected != tokens and len(related):
                fuzzy = bool(np.isin(items, related).any())
            return items, scores, fuzzy

    def _bonus(self, score: np.ndarray, lexical: np.ndarray, tokens: list[str],
               corrected: list[str]) -> np.ndarray:
        """Add whole-title bonuses to the best lexical items; returns the candidate pool."""
        variants = set(key_forms(tokens)) | set(key_forms(corrected))
        exact: set[int] = set()
        for v in variants:
            exact |= self._keys.get(v, set())
        head = lexical[exact_top_k(score[lexical], RERANK_POOL)]
        prefixes = tuple(v + " " for v in variants)
        for i in head.tolist():
            if i in exact:
                continue
            if any(key.startswith(prefixes) for key in self._item_keys[i]):
                score[i] += PREFIX_BONUS
        for i in exact:
            if score[i] > 0:  # every key token is indexed, so an exact key is a lexical hit
                score[i] += EXACT_BONUS
        return lexical

    def _related(self, vectors: np.ndarray, qv: np.ndarray, pool: np.ndarray,
                 score: np.ndarray, k: int) -> np.ndarray:
        """Up to k items outside ``pool`` close to the query in content space, scored below
        ``BLEND``. The query vector is pulled towards the best lexical hits (pseudo-relevance
        feedback): a one-word query embeds poorly, the items it names embed well. Only items
        ``vectors`` covers are candidates (an uncovered item's cosine would be 0)."""
        covered = len(vectors)
        target = qv.astype(np.float64)
        if len(pool):
            best = pool[np.lexsort((pool, -score[pool]))[:FEEDBACK_ITEMS]]
            target = target + vectors[best[best < covered]].sum(axis=0)
            target /= max(np.linalg.norm(target), 1e-12)
        cos = vectors @ target.astype(np.float32)
        cos[pool[pool < covered]] = -np.inf
        top = exact_top_k(cos, k)
        top = top[cos[top] >= RELATED_MIN_COSINE]
        score[top] = BLEND * cos[top]
        return top

    def _query_vector(self, text: str) -> np.ndarray | None:
        if self.content is None:
            return None
        v = self.content.embed([text])[0]
        return v if np.any(v) else None
