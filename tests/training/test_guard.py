"""Guard rails: the served configuration never loses to one of its generators on validation."""

from __future__ import annotations

import numpy as np

from shortlist.training.evaluation import UNION
from shortlist.training.fit import MARGIN_Z, choose_configuration, paired_margin


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
    assert "does not beat its own best generator" in caplog.text
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


def with_users(lead: float, seed: int = 0, n: int = 400):
    """Validation rows and per-user NDCG where the ranker leads ease by ``lead`` on average,
    with per-user noise of 0.2 (standard error 0.01 at 400 users)."""
    rng = np.random.default_rng(seed)
    ease = rng.random(n)
    noise = rng.normal(0, 0.2, n)
    ranker = ease + lead + noise - noise.mean()  # the mean lead is exactly ``lead``
    per_user = {"ranker_mmr": ranker, "ranker": ranker, "ease": ease, "als": ease - 0.05,
                UNION: ease - 0.1}
    return {name: {"ndcg@10": float(v.mean())} for name, v in per_user.items()}, per_user


def test_a_lead_within_the_noise_serves_the_generator(caplog):
    v, per_user = with_users(lead=0.004)  # 0.4 standard errors
    assert v["ranker_mmr"]["ndcg@10"] > v["ease"]["ndcg@10"]
    assert choose_configuration(v, ["als", "ease"], 0.8)["served"] == "ranker+mmr"  # means only
    d = choose_configuration(v, ["als", "ease"], 0.8, per_user=per_user)
    assert d["served"] == "generator:ease" and d["margin_z"] == MARGIN_Z
    m = d["margins"]["ranker+mmr"]
    assert abs(m["diff"] - 0.004) < 1e-12 and 0.2 < m["z"] < 0.6 and m["users"] == 400
    assert "standard errors" in caplog.text


def test_a_significant_lead_serves_the_ranker():
    v, per_user = with_users(lead=0.05)  # about 5 standard errors
    d = choose_configuration(v, ["als", "ease"], 0.8, per_user=per_user)
    assert d["served"] == "ranker+mmr" and d["margins"]["ranker+mmr"]["z"] > 4


def test_paired_margin_known_answers():
    a = np.array([0.5, 0.25, 0.75, 0.0])
    assert paired_margin(a + 0.5, a) == {"diff": 0.5, "se": 0.0, "z": None, "users": 4}
    m = paired_margin(np.array([1.0, 0.0]), np.array([0.0, 0.0]))
    assert m["diff"] == 0.5 and abs(m["se"] - 0.5) < 1e-12 and m["z"] == 1.0
    assert paired_margin(a, a)["z"] is None
    m = paired_margin(np.array([0.0, 0.0, 1.0]), np.array([0.5, 0.0, 0.0]))
    assert abs(m["diff"] - 1 / 6) < 1e-12 and abs(m["z"] - (1 / 6) / m["se"]) < 1e-12
