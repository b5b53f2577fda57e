"""Free-text item search: BM25 with a typo fallback, exact-title boosts and a content blend.

``text`` turns titles and queries into tokens and title keys, ``fuzzy`` finds indexed tokens
within a few edits of a misspelt one, and ``index`` holds the searchable items (``ItemSearch``)
and scores queries. Search reads item vectors from the content model it is given rather than
keeping its own (``ContentSpace``).
"""

from __future__ import annotations

from shortlist.retrieval.search.fuzzy import TypoIndex, levenshtein, max_edits
from shortlist.retrieval.search.index import ContentSpace, ItemSearch
from shortlist.retrieval.search.text import document_tokens, fold, query_tokens, title_keys

__all__ = ["ContentSpace", "ItemSearch", "TypoIndex", "document_tokens", "fold", "levenshtein",
           "max_edits", "query_tokens", "title_keys"]
