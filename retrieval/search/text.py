"""Text handling for item search: folding, query and document tokens, whole-title keys.

Queries and indexed text go through the same folding, so "Amélie" typed as "amelie" (or
"AMÉLIE") matches. Documents are tokenised more generously than queries (compounds also give
their joined form), so "spider-man", "spider man" and "spiderman" all find "Spider-Man".
"""

from __future__ import annotations

import re
import unicodedata

# Leading/trailing articles in the languages of the MovieLens titles: "Godfather, The" and
# "Cité des enfants perdus, La" are also found without them.
ARTICLES = frozenset({
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


def fold(text: str) -> str:
    """Lower-case, accents removed: "Amélie" -> "amelie"."""
    if text.isascii():  # nothing to strip: skip the Unicode normalisation
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


def key_forms(words: list[str]) -> list[str]:
    """The whole-title keys a run of query tokens stands for: as typed and, when it starts
    with an article, without it ("the godfather" is also "godfather"). Titles and queries
    share this, so either side may carry the article."""
    forms = [" ".join(words)]
    if len(words) > 1 and words[0] in ARTICLES:
        forms.append(" ".join(words[1:]))
    return forms


def _front_article(title: str) -> list[str]:
    """Forms of one title: as written, with a trailing ", The" moved to the front, and
    without it."""
    forms = [title]
    m = _TRAILING_ARTICLE.match(title)
    if m and _APOSTROPHES.sub("", fold(m.group(2))) in ARTICLES:
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
    keys: set[str] = set()
    for name in names:
        for form in _front_article(name.strip()):
            words = query_tokens(form)
            if words:
                keys.update(key_forms(words))
    return keys
