"""Guard rails: the served configuration never loses to one of its generators on validation."""

from __future__ import annotations

from shortlist.training.evaluation import UNION
from shortlist.training.fit import choose_configuration


def rows(**ndcg):
    return {name: {"ndcg@10": value} for name, value in ndcg.items()}


def test_keeps_the_tuned_ranker_when_it_wins():
    v = rows(ranker_mmr=0.30, ranker=0.31, als=0.25, ease=0.28, **{UNION: 0.2})
    d = choose_configuration(v, ["als", "ease"], 0.8)
    assert d["served"] == "ranker+mmr" and d["order"] == "ranker"
    assert d["best_generator"] == "ease" and d["best_generator_ndcg@10"] == 0.28


def test_falls_back_to_the_best_configuration_when_a_generator_wins(caplog):
    v = rows(ranker_mmr=0.20, ranker=0.22, als=0.25, ease=0.21, **{UNION: 0.2})
    d = choose_configuration(v, ["als", "ease"], 0.8, "dpp")
    assert d["served"] == "generator:als" and d["order"] == "generator:als"
    assert "loses to its own best generator" in caplog.text
    assert d["validation_ndcg@10"]["ranker+dpp"] == 0.20


def test_the_ranker_without_diversity_can_be_the_fallback():
    v = rows(ranker_mmr=0.20, ranker=0.26, als=0.25, **{UNION: 0.1})
    d = choose_configuration(v, ["als"], 0.7)
    assert d["served"] == "ranker" and d["row"] == "ranker"


def test_without_diversity_the_ranker_is_named_plainly():
    v = rows(ranker_mmr=0.3, ranker=0.3, als=0.1, **{UNION: 0.1})
    assert choose_configuration(v, ["als"], 1.0)["served"] == "ranker"


def test_a_pinned_order_is_served_whatever_validation_says():
    v = rows(ranker_mmr=0.20, ranker=0.22, als=0.25, **{UNION: 0.2})
    d = choose_configuration(v, ["als"], 0.8, pinned="ranker")
    assert d["served"] == "ranker+mmr" and d["reason"] == "pinned to ranker"
    assert choose_configuration(v, ["als"], 0.8, pinned="retrieval")["order"] == "retrieval"


def test_an_unknown_pin_is_refused():
    import pytest

    from shortlist.training.fit import FitError

    with pytest.raises(FitError, match="cannot pin"):
        choose_configuration(rows(ranker_mmr=0.2, ranker=0.2, als=0.1, **{UNION: 0.1}),
                             ["als"], 0.8, pinned="generator:nope")
