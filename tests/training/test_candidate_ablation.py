"""Candidate ablation: what each generator adds to the candidate pool at the same budget."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from shortlist.common.catalog import ItemCatalog
from shortlist.common.vocab import Vocabulary
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.retrieval.candidates import RetrievalConfig
from shortlist.retrieval.generators import Generator, HnswParams, UserState
from shortlist.retrieval.history import UserHistory
from shortlist.training.evaluation import candidate_ablation
from shortlist.training.split import Events


@dataclass
class FixedConfig:
    candidates: int = 3
    light_factor: float = 1.0


class Fixed(Generator):
    """Proposes the same ranking of the catalog to everyone: a known answer per count."""

    Config = FixedConfig

    def __init__(self, name: str, ranking: list[int]) -> None:
        self.name = name
        self.ranking = np.asarray(ranking, np.int64)
        self.config = FixedConfig()

    def propose(self, user: UserState, k: int, banned: np.ndarray):
        top = self.ranking[~banned[self.ranking]][:k]
        return top, np.linspace(1.0, 0.5, len(top)).astype(np.float32)


def models(generators: list[Fixed]) -> RetrievalModels:
    n = 12
    catalog = ItemCatalog([f"i{i}" for i in range(n)], [f"t{i}" for i in range(n)],
                          [[] for _ in range(n)])
    history = UserHistory.from_events(np.array([0, 1]), np.array([0, 0]), np.array([1, 1]),
                                      np.ones(2, np.float32), 2)
    return RetrievalModels(catalog, Vocabulary(["u0", "u1"]), history,
                           {g.name: g for g in generators},
                           RetrievalConfig(max_candidates=6, established_min_items=1),
                           HnswParams(), now=1)


def test_a_generator_is_worth_what_the_others_cannot_fill_in():
    # "a" ranks 1 2 3 7 8 9 then 5; "b" ranks 4 5 6 then 10 11. The test item is 5.
    m = models([Fixed("a", [1, 2, 3, 7, 8, 9, 5]), Fixed("b", [4, 5, 6, 10, 11])])
    test = Events(np.array([0]), np.array([5]), np.array([2]), np.ones(1, np.float32))
    rows = {r["removed"]: r for r in candidate_ablation(m, test, progress=False)}
    assert rows["(none)"]["recall"] == 1.0 and rows["(none)"]["candidates"] == 6
    # Without b, a is asked for 6 and stops short of 5: b was the only way to it.
    assert rows["b"]["recall"] == 0.0 and rows["b"]["delta"] == -1.0
    # Without a, b is asked for 6 and still finds 5: a added nothing for this user.
    assert rows["a"]["recall"] == 1.0 and rows["a"]["delta"] == 0.0


def test_recall_is_averaged_over_test_users():
    m = models([Fixed("a", [1, 2, 3, 7, 8, 9, 5]), Fixed("b", [4, 5, 6, 10, 11])])
    test = Events(np.array([0, 1]), np.array([5, 7]), np.array([2, 2]), np.ones(2, np.float32))
    rows = {r["removed"]: r for r in candidate_ablation(m, test, progress=False)}
    # 7 only comes from a (4th in its ranking: beyond its 3 unless it fills b's share)
    assert rows["(none)"]["recall"] == pytest.approx(0.5)
    assert rows["b"]["recall"] == pytest.approx(0.5)  # loses 5, gains 7
    assert rows["a"]["recall"] == pytest.approx(0.5)
