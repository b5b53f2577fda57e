"""Item search: known answers on the bundled MovieLens catalog, typo fallback, upserts, ties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shortlist.retrieval.content import ContentModel, item_document
from shortlist.retrieval.search import (
    ItemSearch,
    document_tokens,
    levenshtein,
    max_edits,
    query_tokens,
    title_keys,
)
from shortlist.training.datasets import load

GODFATHERS = {"Godfather, The (1972)", "Godfather: Part II, The (1974)",
              "Godfather: Part III, The (1990)"}


@pytest.fixture(scope="module")
def items():
    return load("ml-latest-small").items


@pytest.fixture(scope="module")
def content(items) -> ContentModel:
    docs = [item_document(t, c, x)
            for t, c, x in zip(items.titles, items.categories, items.texts, strict=True)]
    return ContentModel(dim=64).fit(docs)


@pytest.fixture(scope="module")
def search(items, content) -> ItemSearch:
    return ItemSearch.build(items.titles, items.texts, items.categories, content)


@pytest.fixture(scope="module")
def lexical(items) -> ItemSearch:
    """No content model; also the index the upsert tests mutate."""
    return ItemSearch.build(items.titles, items.texts, items.categories, None)


def _titles(items, idx) -> list[str]:
    return [items.titles[i] for i in idx]


def _reference_levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


# ----------------------------------------------------------------------------- text handling


def test_query_tokens_fold_case_accents_and_apostrophes():
    assert query_tokens("  Amélie's  Godfather, THE (1972)!") == [
        "amelies", "godfather", "the", "1972"]
    assert query_tokens("   ") == [] and query_tokens("!!! ...") == []


def test_document_tokens_add_joined_compounds():
    assert set(document_tokens("Spider-Man")) == {"spider", "man", "spiderman"}
    assert set(document_tokens("E.T. the Extra-Terrestrial")) >= {"e", "t", "et",
                                                                   "extraterrestrial"}
    assert {"schindler", "schindlers"} <= set(document_tokens("Schindler's List"))


def test_title_keys_handle_movielens_conventions():
    assert title_keys("Godfather, The (1972)") >= {"the godfather", "godfather"}
    assert title_keys("Godfather: Part II, The (1974)") >= {"the godfather part ii"}
    assert "se7en" in title_keys("Seven (a.k.a. Se7en) (1995)")
    assert "the city of lost children" in title_keys(
        "City of Lost Children, The (Cité des enfants perdus, La) (1995)")
    assert title_keys("Toy Story (1995)") == {"toy story"}


# ----------------------------------------------------------------------------- edit distance


@pytest.mark.parametrize(("a", "b", "bound", "expected"), [
    ("godfater", "godfather", 2, 1),
    ("matrx", "matrix", 2, 1),
    ("kitten", "sitting", 3, 3),
    ("kitten", "sitting", 2, 3),  # over the bound: bound + 1
    ("abc", "abc", 1, 0),
    ("", "ab", 2, 2),
    ("abcdef", "a", 2, 3),
])
def test_levenshtein_known_values(a, b, bound, expected):
    assert levenshtein(a, b, bound) == expected


@given(st.text("abcde", max_size=9), st.text("abcde", max_size=9), st.integers(0, 3))
@settings(max_examples=300, deadline=None)
def test_levenshtein_matches_reference_up_to_the_bound(a, b, bound):
    assert levenshtein(a, b, bound) == min(_reference_levenshtein(a, b), bound + 1)


def test_typo_budget():
    assert [max_edits(t) for t in ("ab", "abc", "abcd", "abcde", "1972")] == [0, 1, 1, 2, 0]


def test_similar_tokens_finds_close_tokens_only():
    s = ItemSearch.build(["matrix", "matrex", "metrix", "matrices", "mattress", "zebra"],
                         None, [[]] * 6)
    # Closest first, then by document frequency, then alphabetically.
    assert s.similar_tokens("matrx", 2) == [("matrex", 1), ("matrix", 1), ("metrix", 2)]
    assert s.similar_tokens("matrx", 1) == [("matrex", 1), ("matrix", 1)]
    assert s.similar_tokens("matrx", 0) == []
    assert s.similar_tokens("zzzzz", 2) == []


# ----------------------------------------------------------------------------- known answers


def test_typo_finds_the_godfather_first(items, search):
    idx, scores, fuzzy = search.search("Godfater", 10)
    assert items.titles[idx[0]] == "Godfather, The (1972)"
    assert fuzzy is True
    assert GODFATHERS <= set(_titles(items, idx[:5]))


def test_exact_godfather_is_not_fuzzy(items, search):
    idx, _, fuzzy = search.search("godfather", 10)
    assert fuzzy is False
    assert set(_titles(items, idx[:3])) == GODFATHERS
    assert items.titles[idx[0]] == "Godfather, The (1972)"


def test_leading_article_matches_movielens_trailing_article(items, search):
    idx, _, _ = search.search("the godfather", 5)
    assert items.titles[idx[0]] == "Godfather, The (1972)"


def test_year_in_title_can_be_searched(items, search):
    idx, _, _ = search.search("godfather 1974", 3)
    assert items.titles[idx[0]] == "Godfather: Part II, The (1974)"
    idx, _, _ = search.search("1972", 10)
    assert len(idx) == 10 and all("1972" in t for t in _titles(items, idx))


def test_toy_story_films_come_first(items, search):
    idx, _, fuzzy = search.search("toy story", 10)
    assert items.titles[idx[0]] == "Toy Story (1995)"
    assert set(_titles(items, idx[:3])) == {"Toy Story (1995)", "Toy Story 2 (1999)",
                                            "Toy Story 3 (2010)"}
    assert not fuzzy


def test_star_wars_top_results_are_star_wars_films(items, search):
    idx, _, _ = search.search("star wars", 8)
    assert len(idx) == 8
    assert all("Star Wars" in t for t in _titles(items, idx))


def test_matrix_typo(items, search):
    idx, _, fuzzy = search.search("Matrx", 5)
    assert items.titles[idx[0]] == "Matrix, The (1999)"
    assert fuzzy is True
    assert {"Matrix Reloaded, The (2003)", "Matrix Revolutions, The (2003)"} <= set(
        _titles(items, idx[:3]))


def test_multi_word_typos(items, search):
    idx, _, fuzzy = search.search("harry poter", 5)
    assert fuzzy and all("Harry Potter" in t for t in _titles(items, idx))
    idx, _, fuzzy = search.search("jurassic prk", 1)
    assert fuzzy and _titles(items, idx) == ["Jurassic Park (1993)"]


def test_nonsense_and_empty_queries_return_nothing(search, lexical):
    for s in (search, lexical):
        for query in ("zzqqxx", "", "   ", "!!! ...", "zzqqxx qqzzyy"):
            idx, scores, fuzzy = s.search(query, 10)
            assert len(idx) == 0 and len(scores) == 0 and fuzzy is False, query
    idx, _, _ = search.search("godfather", 0)
    assert len(idx) == 0


def test_content_model_fills_in_related_items(items, search, lexical):
    idx, scores, fuzzy = search.search("godfather", 10)
    assert len(idx) == 10 and not fuzzy
    assert GODFATHERS <= set(_titles(items, idx[:4]))
    # Related items rank below every lexical match.
    assert "Godfather" not in items.titles[idx[-1]] and scores[-1] < scores[3]
    idx, _, _ = lexical.search("godfather", 10)  # lexical only: just the title matches
    assert all("Godfather" in t for t in _titles(items, idx))


def test_lexical_only_index_agrees_on_known_answers(items, lexical):
    idx, _, fuzzy = lexical.search("Godfater", 3)
    assert items.titles[idx[0]] == "Godfather, The (1972)" and fuzzy
    idx, _, _ = lexical.search("toy story", 1)
    assert _titles(items, idx) == ["Toy Story (1995)"]


def test_ties_break_by_lower_index():
    s = ItemSearch.build(["Same Title", "Other", "Same Title", "Same Title"], None,
                         [["A"], ["A"], ["A"], ["A"]])
    idx, scores, _ = s.search("same title", 10)
    assert idx.tolist() == [0, 2, 3]
    assert scores[0] == scores[1] == scores[2]
    idx, _, _ = s.search("a", 10)  # category only: all four tie
    assert idx.tolist() == [0, 1, 2, 3]


# ----------------------------------------------------------------------------- upserts


def test_added_item_is_findable_exactly_and_by_typo(items, content):
    s = ItemSearch.build(items.titles, items.texts, items.categories, content)
    new = len(items.titles)
    s.add(new, "Quantum Badgers (2031)", "burrowing physicists", ["Sci-Fi", "Comedy"])
    assert len(s) == new + 1
    idx, _, fuzzy = s.search("quantum badgers", 5)
    assert idx[0] == new and not fuzzy
    idx, _, fuzzy = s.search("quantm", 5)
    assert new in idx.tolist()[:2] and fuzzy
    idx, _, fuzzy = s.search("badgrs", 5)
    assert idx[0] == new and fuzzy


def test_updating_an_item_replaces_its_old_tokens(items, lexical):
    old = items.titles.index("Pulp Fiction (1994)")
    assert lexical.search("pulp fiction", 1)[0].tolist() == [old]
    lexical.add(old, "Totally Different Picture (2030)", "", ["Drama"])
    assert old not in lexical.search("pulp fiction", 50)[0].tolist()
    assert lexical.search("totally different picture", 1)[0].tolist() == [old]
    assert lexical.search("totaly diferent picture", 1)[0].tolist() == [old]
    lexical.add(old, "Pulp Fiction (1994)", "", ["Comedy", "Crime", "Drama", "Thriller"])
    assert lexical.search("pulp fiction", 1)[0].tolist() == [old]
    assert old not in lexical.search("totally different picture", 50)[0].tolist()


def test_add_can_start_from_an_empty_index_and_skip_indices():
    s = ItemSearch.build([], [], [], None)
    assert s.search("anything", 5)[0].size == 0
    s.add(3, "Lonely Item", "", [])
    assert len(s) == 4
    assert s.search("lonely", 5)[0].tolist() == [3]
    assert s.search("lonley", 5)[0].tolist() == [3]


def test_removed_tokens_leave_the_typo_index():
    s = ItemSearch.build(["Xylophone Dreams"], None, [[]])
    s.add(0, "Something Else", "", [])
    assert s.similar_tokens("xylophon", 2) == []
    assert s.search("xylophon", 5)[0].size == 0


# ----------------------------------------------------------------------------- properties


_WORDS = ["the", "godfather", "star", "wars", "toy", "story", "matrix", "love", "night",
          "1995", "godfater", "lov", "x", "zzqq", "a", "of", "sci-fi", "comedy", "amélie"]


@given(
    words=st.lists(st.sampled_from(_WORDS), max_size=4),
    noise=st.text(max_size=6),
    k=st.integers(0, 30),
)
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_results_are_distinct_bounded_and_sorted(search, words, noise, k):
    query = " ".join(words) + " " + noise
    idx, scores, fuzzy = search.search(query, k)
    assert isinstance(fuzzy, bool)
    assert len(idx) == len(scores) <= k
    assert len(set(idx.tolist())) == len(idx)
    assert np.all((idx >= 0) & (idx < len(search)))
    assert np.all(np.diff(scores) <= 0)
    assert np.all(np.isfinite(scores)) and np.all(scores > 0)
    again = search.search(query, k)
    assert np.array_equal(again[0], idx) and np.array_equal(again[1], scores)
