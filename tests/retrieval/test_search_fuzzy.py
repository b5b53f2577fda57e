"""The typo index on its own: what it finds, and that removals and id reuse stay exact."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shortlist.retrieval.search import TypoIndex, levenshtein, max_edits


def _index(tokens) -> TypoIndex:
    typos = TypoIndex()
    for t in tokens:
        typos.add(t)
    return typos


def test_within_finds_close_tokens_excluding_itself():
    typos = _index(["matrix", "matrex", "metrix", "matrices", "mattress", "zebra"])
    assert sorted(typos.within("matrx", 2)) == [("matrex", 1), ("matrix", 1), ("metrix", 2)]
    assert sorted(typos.within("matrix", 1)) == [("matrex", 1), ("metrix", 1)]
    assert typos.within("matrx", 0) == [] and typos.within("qqqqq", 2) == []


def test_removed_tokens_are_not_found_and_their_ids_are_reused():
    typos = _index(["xylophone", "xylophones"])
    typos.remove("xylophone")
    assert "xylophone" not in typos and len(typos) == 1
    assert typos.within("xylophon", 2) == [("xylophones", 2)]
    capacity = len(typos._token_len)
    for i in range(200):  # churn: one token in, one out, as re-described items do
        typos.add(f"churn{i}")
        typos.remove(f"churn{i}")
    assert len(typos._token_len) == capacity
    typos.add("xylophone")
    assert sorted(typos.within("xylophon", 1)) == [("xylophone", 1)]


@given(st.lists(st.text("abcd", min_size=1, max_size=8), max_size=25, unique=True),
       st.text("abcd", min_size=3, max_size=8))
@settings(max_examples=300, deadline=None)
def test_within_equals_a_brute_force_scan(tokens, query):
    """The trigram, length and signature filters never drop a token in range, for the typo
    budgets search uses (a budget so large that a close token may share no trigram at all,
    like 1 edit between "a" and "b", is outside the contract)."""
    bound = max_edits(query)
    expected = sorted((t, levenshtein(query, t, bound)) for t in tokens
                      if t != query and levenshtein(query, t, bound) <= bound)
    assert sorted(_index(tokens).within(query, bound)) == expected
