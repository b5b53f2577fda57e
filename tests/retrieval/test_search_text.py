"""Title keys and query variants agree on articles, from either side."""

from __future__ import annotations

from shortlist.retrieval.search.text import key_forms, query_tokens, title_keys


def test_key_forms_drop_a_leading_article_only_before_more_words():
    assert key_forms(["the", "godfather"]) == ["the godfather", "godfather"]
    assert key_forms(["godfather", "the"]) == ["godfather the"]
    assert key_forms(["the"]) == ["the"]


def test_a_query_with_or_without_the_article_hits_a_title_key():
    keys = title_keys("Cité des enfants perdus, La (1995)")
    for query in ("la cite des enfants perdus", "Cité des enfants perdus"):
        assert set(key_forms(query_tokens(query))) & keys, query
