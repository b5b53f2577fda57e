"""Free-text item search: BM25 over titles (and, weaker, tags/text and categories), a typo
fallback, exact-title boosts and an optional content-model blend.

Pure domain code: no gRPC, no I/O. Everything is kept in mutable in-memory indices so an item
upserted at serving time (``add``) is findable by the next query.

Scoring, per query:

1. Each distinct query token that is indexed contributes ``idf * w`` to the items whose posting
   holds it, where ``w`` is the BM25F-style field-weighted term weight computed at index time
   (title 1.0 with length normalisation, text/tags 0.35, categories 0.25).
2. A token that matches no indexed token exactly (and is long enough, and not a number) is
   expanded to indexed tokens within a small Levenshtein distance (1 for 3-4 characters, 2 for
   longer). Candidates come from a padded character-trigram index (the q-gram lemma bounds how
   many trigrams a close token must share), then a length window and a character-set signature
   (one edit flips at most two bits), and only then the banded, early-exit edit distance.
   Expansions score ``0.8 * idf * w`` at the smallest distance found, half that further away;
   per item only the best expansion of a token counts.
3. The sum is multiplied by the idf-weighted share of query tokens the item matched, and scaled
   so the best item scores 1.
4. MovieLens titles ("Godfather, The (1972)") get normalised title keys: year dropped, trailing
   article moved to the front and also dropped, alternative titles in parentheses ("a.k.a.")
   as extra keys. A query (or its typo-corrected form) equal to a key adds ``EXACT_BONUS``;
   a key that starts with the query adds ``PREFIX_BONUS``.
5. With a content model, ``BLEND * cosine(query, item)`` is added (the corrected query is
   embedded with ``ContentModel.embed``), which breaks ties; when fewer than ``k`` items match
   lexically, related items fill in at ``BLEND * cosine`` (at most BLEND, below good matches),
   by cosine to the query vector plus the best lexical hits' vectors (pseudo-relevance
   feedback), if at least ``RELATED_MIN_COSINE``.

Ties are broken by lower item index. ``fuzzy`` is True when any returned item owes its place
to the typo fallback.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata

import numpy as np

from shortlist.retrieval.content import ContentModel, item_document
from shortlist.retrieval.hnsw import exact_top_k

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
MAX_FUZZY_LEN = 40  # longer tokens get no typo fallback
FEEDBACK_ITEMS = 3

_ARTICLES = frozenset({
    "the", "a", "an", "les", "la", "le", "l", "il", "lo", "gli", "i", "der", "die", "das",
    "den", "det", "el", "los", "las", "un", "une", "una", "uno", "o", "os", "as", "de", "het",
    "en", "ett", "ta", "to",
})
_YEAR_SUFFIX = re.compile(r"(?<!\s)\s*\(\s*(\d{4})\s*(?:[-\u2013]\s*\d{0,4}\s*)?\)\s*$")
_PARENS = re.compile(r"\(([^()]*)\)")
_AKA = re.compile(r"^\s*a\.?\s*k\.?\s*a\.?\s*", re.IGNORECASE)
_TRAILING_ARTICLE = re.compile(r"^(.*\S)\s*,\s*([^\W\d_]+'?)\s*$")
_APOSTROPHES = re.compile(r"['\u2019\u2018`]")
_WORD = re.compile(r"[^\W_]+")
# A word possibly joined by apostrophes, hyphens or dots: "schindler's", "spider-man", "e.t".
_COMPOUND = re.compile(r"(?<![^\W_])[^\W_]+(?:['\u2019.\-][^\W_]+)+")
_JOINERS = re.compile(r"['\u2019.\-]")


# --------------------------------------------------------------------------- text handling


def fold(text: str) -> str:
    """Lower-case, accents removed: "Amélie" -> "amelie"."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def query_tokens(text: str) -> list[str]:
    """Tokens of a query: folded, apostrophes joined ("schindler's" -> "schindlers"),
    split on everything else that is not a letter or digit."""
    return _WORD.findall(_APOSTROPHES.sub("", fold(text)))


def document_tokens(text: str) -> list[str]:
    """Tokens of indexed text: every alphanumeric run, plus the joined form of compounds
    ("spider-man" also gives "spiderman", "e.t." gives "et", "schindler's" gives
    "schindlers"), so queries typed either way match."""
    folded = fold(text)
    tokens = _WORD.findall(folded)
    for compound in _COMPOUND.findall(folded):
        tokens.append(_JOINERS.sub("", compound))
    return tokens


def _front_article(title: str) -> list[str]:
    """Forms of one title: as written, with a trailing ", The" moved to the front, and
    without it."""
    forms = [title]
    m = _TRAILING_ARTICLE.match(title)
    if m and _APOSTROPHES.sub("", fold(m.group(2))) in _ARTICLES:
        forms += [f"{m.group(2)} {m.group(1)}", m.group(1)]
    return forms


def title_keys(title: str) -> set[str]:
    """Normalised whole-title keys for exact/prefix matching.

    "Godfather, The (1972)" -> {"godfather the", "the godfather", "godfather"};
    "Seven (a.k.a. Se7en) (1995)" also gives "se7en".
    """
    core = _YEAR_SUFFIX.sub("", title).strip()
    names = [core]
    main = _PARENS.sub(" ", core).strip()
    if main and main != core:
        names.append(main)
    names += [_AKA.sub("", alt) for alt in _PARENS.findall(core)]
    keys = set()
    for name in names:
        for form in _front_article(name.strip()):
            key = " ".join(query_tokens(form))
            if key:
                keys.add(key)
                words = key.split(" ")
                if len(words) > 1 and words[0] in _ARTICLES:
                    keys.add(" ".join(words[1:]))
    return keys


# --------------------------------------------------------------------------- edit distance


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


# --------------------------------------------------------------------------- the index


def _bm25_tf(tf: int, length: int, avg: float) -> float:
    return tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * length / avg))


def _item_weights(title: str, text: str, categories: list[str], avg_title: float,
                  avg_text: float) -> dict[str, float]:
    """token -> field-weighted BM25 term weight (idf is applied at query time)."""
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

    Thread-safe: ``add`` and ``search`` serialise on an internal lock.
    """

    def __init__(self, content: ContentModel | None = None, avg_title_len: float = 4.0,
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
        # Fuzzy side: token ids, trigram postings of ids, lengths and signatures by id.
        self._token_id: dict[str, int] = {}
        self._token_str: list[str | None] = []
        self._free_ids: list[int] = []
        self._token_len = np.zeros(0, dtype=np.int32)
        self._token_sig = np.zeros(0, dtype=np.uint64)
        self._grams: dict[str, set[int]] = {}
        self._gram_arrays: dict[str, np.ndarray] = {}
        dim = content.vectors.shape[1] if content is not None else 0
        self._vectors = np.zeros((0, dim), dtype=np.float32)

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(cls, titles: list[str], texts: list[str] | None, categories: list[list[str]],
              content: ContentModel | None = None) -> ItemSearch:
        """Index items 0..len(titles)-1. ``texts`` may be None or shorter (missing = "")."""
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
        search._vectors = search._initial_vectors(titles, texts[:n], cats[:n])
        for i in range(n):
            search._index(i, titles[i], texts[i], cats[i])
        return search

    def _initial_vectors(self, titles: list[str], texts: list[str],
                         categories: list[list[str]]) -> np.ndarray:
        if self.content is None:
            return np.zeros((len(titles), 0), dtype=np.float32)
        have = self.content.vectors[: len(titles)]
        rest = [item_document(titles[i], categories[i], texts[i])
                for i in range(len(have), len(titles))]
        parts = [np.asarray(have, dtype=np.float32)]
        if rest:
            parts.append(self.content.embed(rest))
        return np.ascontiguousarray(np.vstack(parts), dtype=np.float32)

    def __len__(self) -> int:
        return self._n

    def add(self, idx: int, title: str, text: str = "",
            categories: list[str] | None = None) -> None:
        """Index a new item or replace an existing one's title/text/categories (and content
        vector). Searchable as soon as this returns."""
        if idx < 0:
            raise ValueError(f"item index must be >= 0, got {idx}")
        categories = list(categories or [])
        vector = None
        if self.content is not None:
            vector = self.content.embed([item_document(title, categories, text)])[0]
        with self._lock:
            if idx >= len(self._vectors):
                grow = max(idx + 1, 2 * len(self._vectors), 16)
                vectors = np.zeros((grow, self._vectors.shape[1]), dtype=np.float32)
                vectors[: len(self._vectors)] = self._vectors
                self._vectors = vectors
            if vector is not None:
                self._vectors[idx] = vector
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
                self._register_token(token)
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
                self._unregister_token(token)
        self._forward[idx] = {}
        for key in self._item_keys[idx]:
            holders = self._keys[key]
            holders.discard(idx)
            if not holders:
                del self._keys[key]
        self._item_keys[idx] = set()

    def _register_token(self, token: str) -> None:
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

    def _unregister_token(self, token: str) -> None:
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

    def _gram_ids(self, gram: str) -> np.ndarray | None:
        ids = self._gram_arrays.get(gram)
        if ids is None:
            held = self._grams.get(gram)
            if held is None:
                return None
            ids = np.fromiter(held, dtype=np.int64, count=len(held))
            self._gram_arrays[gram] = ids
        return ids

    def similar_tokens(self, token: str, max_dist: int) -> list[tuple[str, int]]:
        """Indexed tokens within ``max_dist`` edits of ``token`` (itself excluded), closest
        first, then by document frequency, then alphabetically."""
        if max_dist <= 0:
            return []
        with self._lock:
            return self._similar(token, max_dist)

    def _similar(self, token: str, max_dist: int) -> list[tuple[str, int]]:
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
                found.append((d, -len(self._postings[other]), other))
        found.sort()
        return [(t, d) for d, _, t in found]

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
            qv = self._query_vector(" ".join(corrected))
            if qv is not None:
                vectors = self._vectors[:n]
                score[pool] += BLEND * np.maximum(vectors[pool] @ qv, 0.0)
                if len(pool) < k:
                    related = self._related(qv, pool, score, k - len(pool))
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
        variants = set()
        for words in (tokens, corrected):
            variants.add(" ".join(words))
            if len(words) > 1 and words[0] in _ARTICLES:
                variants.add(" ".join(words[1:]))
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

    def _related(self, qv: np.ndarray, pool: np.ndarray, score: np.ndarray,
                 k: int) -> np.ndarray:
        """Up to k items outside ``pool`` close to the query in content space, scored below
        ``BLEND``. The query vector is pulled towards the best lexical hits (pseudo-relevance
        feedback): a one-word query embeds poorly, the items it names embed well."""
        vectors = self._vectors[: self._n]
        target = qv.astype(np.float64)
        if len(pool):
            best = pool[np.lexsort((pool, -score[pool]))[:FEEDBACK_ITEMS]]
            target = target + vectors[best].sum(axis=0)
            target /= max(np.linalg.norm(target), 1e-12)
        cos = vectors @ target.astype(np.float32)
        cos[pool] = -np.inf
        top = exact_top_k(cos, k)
        top = top[cos[top] >= RELATED_MIN_COSINE]
        score[top] = BLEND * cos[top]
        return top

    def _query_vector(self, text: str) -> np.ndarray | None:
        if self.content is None or self._vectors.shape[1] == 0:
            return None
        v = self.content.embed([text])[0]
        return v if np.any(v) else None
