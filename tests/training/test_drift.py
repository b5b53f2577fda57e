"""Drift references (training/drift.py) in the fitted artifact: present, of known shape, and
reproduced exactly by the models the servers load."""

from __future__ import annotations

import numpy as np
import pytest

from shortlist.common import artifacts
from shortlist.common.drift import POPULARITY, SCORE, SEGMENT, SEGMENTS, SOURCES, Distribution
from shortlist.ranking.bundle import RankingModels
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.training.drift import drift_references, popularity_edges, reference_users
from shortlist.training.params import FitParams


@pytest.fixture(scope="module")
def version(trained):
    path = artifacts.resolve(trained)
    return path, RetrievalModels.load(path), RankingModels.load(path)


def test_the_fitted_artifact_carries_both_references(version):
    path, retrieval, ranking = version
    assert (path / "retrieval" / "drift_reference.json").is_file()
    assert "retrieval/drift_reference.json" in artifacts.read_manifest(path).data["files"]
    ref = retrieval.drift
    assert set(ref.signals) == {SOURCES, SEGMENT}
    # every one of the synthetic dataset's 150 users has 20 items: all established
    assert ref.sample == {"users": 150, "k": 10}
    assert ref.signals[SEGMENT].labels == SEGMENTS
    assert ref.signals[SEGMENT].proportions == (0.0, 0.0, 0.0, 1.0)
    sources = ref.signals[SOURCES]
    assert sources.labels == tuple(retrieval.generators)
    assert sum(sources.proportions) == pytest.approx(1.0)
    assert min(sources.proportions) > 0  # every generator proposes for established users

    ref = ranking.drift
    assert set(ref.signals) == {SCORE, POPULARITY} and ref.sample["k"] == 10
    score = ref.signals[SCORE]
    assert score.observations == 150 * 10 and score.bins == 10
    assert score.proportions == pytest.approx([0.1] * 10, abs=0.01)  # the reference's deciles
    pop = ref.signals[POPULARITY]
    assert pop.edges == popularity_edges(ranking.stats.popularity)
    assert pop.observations == 150 * 10


def test_the_served_models_reproduce_the_reference(version):
    """What a server observes for the reference's users is the reference: PSI 0."""
    _, retrieval, ranking = version
    users = reference_users(retrieval, FitParams().seed)
    again_retrieval, again_ranking = drift_references(retrieval, ranking.pipeline(), users)
    for saved, again in ((retrieval.drift, again_retrieval), (ranking.drift, again_ranking)):
        for name, d in saved.signals.items():
            assert again.signals[name].edges == pytest.approx(d.edges), name
            assert again.signals[name].proportions == pytest.approx(d.proportions), name


def test_popularity_tiers_by_hand():
    counts = np.array([10, 5, 3, 1, 1, 0])  # 20 interactions
    pop = np.log1p(counts).astype(np.float32)
    # most popular first, running share .50 .75 .90 .95 1.0: the item drawing 10 reaches both
    # 20% and 50% (one edge), the one drawing 3 reaches 80%; the least popular seen draws 1
    edges = popularity_edges(pop)
    assert edges == (float(pop[3]), float(pop[2]), float(pop[0]))
    d = Distribution.numeric(pop, edges)
    # unseen: the 0; tail: the two 1s; [3, 10): 3 and 5; head: 10
    assert [round(p * 6) for p in d.proportions] == [1, 2, 2, 1]
    assert popularity_edges(np.zeros(4, np.float32)) == ()


def test_fit_times_the_reference(trained):
    phases = artifacts.read_manifest(artifacts.resolve(trained)).data["fit_phase_seconds"]
    assert "drift_reference" in phases
