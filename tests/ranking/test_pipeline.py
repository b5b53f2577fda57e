"""RankingPipeline: features -> real LightGBM ranker -> MMR."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from shortlist.common.candidates import Candidates
from shortlist.ranking.features import FeatureSpec, ItemStats, build_features
from shortlist.ranking.pipeline import RankingConfig, RankingPipeline
from shortlist.ranking.ranker import LambdaRanker

N_ITEMS = 200
GENERATORS = ("als", "content", "trending")
SPEC = FeatureSpec(GENERATORS, ("content", "als"))
FEATURE_NAMES = SPEC.names
F = len(FEATURE_NAMES)
POP = FEATURE_NAMES.index("popularity")


def make_stats(seed: int = 3) -> ItemStats:
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(N_ITEMS, 8))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    genres = sp.csr_matrix((rng.random((N_ITEMS, 4)) < 0.3).astype(np.float32))
    now = 1_700_000_000
    return ItemStats(
        popularity=rng.random(N_ITEMS).astype(np.float32),
        trending=rng.random(N_ITEMS).astype(np.float32),
        first_seen=now - rng.integers(0, 400 * 86400, N_ITEMS),
        genres=genres, spaces={"content": vecs.astype(np.float32),
                               "als": vecs[:, ::-1].copy().astype(np.float32)}, now=now,
        times_indptr=np.arange(N_ITEMS + 1, dtype=np.int64),
        times=now - rng.integers(0, 60 * 86400, N_ITEMS), diversity_space="content",
    )


def make_input(n: int, seed: int = 4) -> Candidates:
    rng = np.random.default_rng(seed)
    items = rng.choice(N_ITEMS, n, replace=False).astype(np.int64)
    ranks = rng.integers(0, 50, size=(n, len(GENERATORS))).astype(np.int32)
    scores = rng.random((n, len(GENERATORS))).astype(np.float32)
    scores[ranks == 0] = np.nan
    affinity = rng.normal(size=(n, len(GENERATORS))).astype(np.float32)
    affinity[:, 2] = np.nan
    return Candidates(
        items=items, generators=GENERATORS, scores=scores, ranks=ranks, affinity=affinity,
        retrieval_score=np.sort(rng.random(n))[::-1].astype(np.float32),
        history_length=12, recent_items=rng.choice(N_ITEMS, 5, replace=False),
        user_time=1_700_000_000 - 86400,
    )


def train_ranker(names: list[str], seed: int = 5) -> LambdaRanker:
    """A real ranker whose relevance is driven by the popularity column."""
    rng = np.random.default_rng(seed)
    x = rng.random((60 * 20, F)).astype(np.float32)
    y = (x[:, POP] + 0.2 * rng.random(len(x)) > 0.8).astype(np.float32)
    return LambdaRanker().fit(x, y, np.full(60, 20), names, num_boost_round=30)


@pytest.fixture(scope="module")
def stats() -> ItemStats:
    return make_stats()


@pytest.fixture(scope="module")
def pipeline(stats) -> RankingPipeline:
    return RankingPipeline(train_ranker(FEATURE_NAMES), stats, RankingConfig(0.5, 20, SPEC))


def test_rejects_ranker_with_other_feature_names(stats):
    renamed = [f"f{i}" for i in range(F)]
    with pytest.raises(ValueError, match="differ"):
        RankingPipeline(train_ranker(renamed), stats, RankingConfig(features=SPEC))
    reordered = [FEATURE_NAMES[1], FEATURE_NAMES[0], *FEATURE_NAMES[2:]]
    with pytest.raises(ValueError, match="differ"):
        RankingPipeline(train_ranker(reordered), stats, RankingConfig(features=SPEC))


def test_scores_come_from_the_ranker(pipeline, stats):
    inp = make_input(60)
    pos, scores, timings = pipeline.rank(inp, 10)
    expected = pipeline.ranker.predict(build_features(inp, stats, SPEC))
    np.testing.assert_array_equal(scores, expected[pos])
    assert set(timings) == {"features", "model", "mmr"}
    assert all(v >= 0 for v in timings.values())
    assert len(np.unique(expected)) > 10  # the ranker really discriminates


@pytest.mark.parametrize("k", [1, 10, 20, 35])
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_returns_k_distinct_positions(pipeline, k, lam):
    inp = make_input(60)
    pos, scores, _ = pipeline.rank(inp, k, lam)
    assert len(pos) == k
    assert len(set(pos.tolist())) == k
    assert pos.min() >= 0 and pos.max() < len(inp)
    assert len(scores) == k


def test_fewer_candidates_than_k(pipeline):
    pos, _, _ = pipeline.rank(make_input(7), 10, 0.5)
    assert sorted(pos.tolist()) == list(range(7))
    pos, scores, _ = pipeline.rank(make_input(0), 10, 0.5)
    assert len(pos) == 0 and len(scores) == 0


def test_lambda_one_is_pure_score_order(pipeline):
    inp = make_input(80)
    pos, scores, _ = pipeline.rank(inp, 15, 1.0)
    all_scores = pipeline.ranker.predict(build_features(inp, pipeline.stats, SPEC))
    np.testing.assert_array_equal(pos, np.argsort(-all_scores, kind="stable")[:15])
    assert np.all(np.diff(scores) <= 0)


def test_config_lambda_is_the_default(stats):
    ranker = train_ranker(FEATURE_NAMES)
    inp = make_input(80)
    pure = RankingPipeline(ranker, stats, RankingConfig(1.0, 30, SPEC))
    diverse = RankingPipeline(ranker, stats, RankingConfig(0.0, 30, SPEC))
    np.testing.assert_array_equal(pure.rank(inp, 10)[0], pure.rank(inp, 10, 1.0)[0])
    np.testing.assert_array_equal(diverse.rank(inp, 10)[0], diverse.rank(inp, 10, 0.0)[0])
    assert not np.array_equal(pure.rank(inp, 10)[0], diverse.rank(inp, 10)[0])


def test_mmr_only_reorders_the_top_n(pipeline):
    inp = make_input(80)
    all_scores = pipeline.ranker.predict(build_features(inp, pipeline.stats, SPEC))
    top = set(np.argsort(-all_scores, kind="stable")[:20].tolist())  # mmr_top_n = 20
    pos, _, _ = pipeline.rank(inp, 10, 0.0)
    assert set(pos.tolist()) <= top
    assert pos[0] == int(np.argmax(all_scores))
    # lam = 0: after the first pick, every pick is the least similar to what was chosen
    vecs = pipeline.stats.diversity[inp.items]
    chosen = [int(pos[0])]
    for p in pos[1:]:
        remaining = sorted(top - set(chosen))
        # mmr's running max similarity starts at 0, so negative similarities count as 0
        max_sim = {c: max([0.0] + [float(vecs[c] @ vecs[q]) for q in chosen])
                   for c in remaining}
        assert max_sim[int(p)] == pytest.approx(min(max_sim.values()))
        chosen.append(int(p))


def test_generator_order_follows_that_generators_ranks(stats):
    """The guard rail's fallback: one generator's own order over the candidates."""
    ranker = train_ranker(FEATURE_NAMES)
    inp = make_input(40)
    pipe = RankingPipeline(ranker, stats, RankingConfig(1.0, 20, SPEC, order="generator:als"))
    pos, scores, timings = pipe.rank(inp, 10)
    ranks = inp.ranks[:, 0].astype(float)
    ranks[ranks == 0] = np.inf
    expected = np.lexsort((np.arange(len(inp)), ranks))[:10]
    np.testing.assert_array_equal(pos, expected)
    np.testing.assert_allclose(scores, np.nan_to_num(inp.scores[pos, 0]))
    assert "model" not in timings and pipe.configuration() == "generator:als"
    # the ranker is still there: evaluation may ask for it explicitly
    ranked, _, _ = pipe.rank(inp, 10, 1.0, order="ranker")
    assert not np.array_equal(ranked, pos)


def test_retrieval_order_and_configuration_names(stats):
    ranker = train_ranker(FEATURE_NAMES)
    inp = make_input(30)
    pipe = RankingPipeline(ranker, stats, RankingConfig(1.0, 20, SPEC, order="retrieval"))
    pos, scores, _ = pipe.rank(inp, 5)
    assert pos.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(scores, inp.retrieval_score[:5])
    assert RankingPipeline(ranker, stats, RankingConfig(
        0.7, 20, SPEC, diversity="dpp")).configuration() == "ranker+dpp"
    assert RankingPipeline(ranker, stats, RankingConfig(
        1.0, 20, SPEC)).configuration() == "ranker"


@pytest.mark.parametrize("method", ["mmr", "dpp", "calibration"])
def test_every_diversity_method_serves_k_distinct_candidates(stats, method):
    ranker = train_ranker(FEATURE_NAMES)
    inp = make_input(60)
    pipe = RankingPipeline(ranker, stats, RankingConfig(0.5, 30, SPEC, diversity=method))
    pos, _, _ = pipe.rank(inp, 10)
    assert len(set(pos.tolist())) == 10
    plain, _, _ = pipe.rank(inp, 10, 1.0)
    top = set(np.argsort(-ranker.predict(pipe.features(inp)), kind="stable")[:30].tolist())
    assert set(pos.tolist()) <= top  # only the pool is re-ranked
    assert pipe.configuration() == f"ranker+{method}"
    assert pos.tolist() != plain.tolist() or method == "calibration"


def test_rule_shifts_add_log_odds_and_exclusions_drop_on_every_order(pipeline, stats):
    inp = make_input(40)
    all_scores = pipeline.ranker.predict(build_features(inp, pipeline.stats, SPEC))
    shift = np.zeros(40)
    shift[7] = 50.0  # far more than the ranker's spread: 7 comes first
    keep = np.ones(40, bool)
    keep[np.argsort(-all_scores)[0]] = False  # the best one is excluded
    pos, scores, _ = pipeline.rank(inp, 10, 1.0, shift=shift, keep=keep)
    expected = np.argsort(-(all_scores + shift + np.where(keep, 0, -np.inf)), kind="stable")
    np.testing.assert_array_equal(pos, expected[:10])
    assert pos[0] == 7 and scores[0] == pytest.approx(all_scores[7] + 50.0, rel=1e-5)
    # on the merged order the base is -ln(60 + position), positions counted after exclusions:
    # with 1 excluded, item 30 is at 29 and a factor just under 89/60 puts it second
    retrieval = RankingPipeline(pipeline.ranker, stats, RankingConfig(1.0, 20, SPEC,
                                                                      order="retrieval"))
    shift = np.zeros(40)
    shift[30] = np.log(89 / 60) - 1e-6
    pos, _, _ = retrieval.rank(inp, 3, shift=shift, keep=np.arange(40) != 1)
    assert pos.tolist() == [0, 30, 2]


@pytest.mark.parametrize("lam", [0.5, 1.0])
def test_scores_given_rank_exactly_as_scores_computed(pipeline, lam):
    """Evaluation scores a user's candidates once and ranks them several ways: the ranking
    (with rules too) must be the one rank computes itself, and the given array untouched."""
    inp = make_input(50, seed=9)
    given = pipeline.score(inp)
    kept = given.copy()
    shift = np.zeros(50)
    shift[3] = 1.5
    keep = np.arange(50) != 11
    for kwargs in ({}, {"shift": shift, "keep": keep}):
        want_pos, want_scores, _ = pipeline.rank(inp, 10, lam, **kwargs)
        pos, scores, timings = pipeline.rank(inp, 10, lam, scores=given, **kwargs)
        np.testing.assert_array_equal(pos, want_pos)
        np.testing.assert_array_equal(scores, want_scores)
        assert "features" not in timings
    np.testing.assert_array_equal(given, kept)
    # scores that disagree with the ranker's are the ones used
    pos, _, _ = pipeline.rank(inp, 5, 1.0, scores=-given)
    np.testing.assert_array_equal(pos, np.argsort(given, kind="stable")[:5])


def test_a_ranker_that_ties_every_candidate_serves_the_merged_order(stats):
    """A model that learned only from a user-level column (here history length) scores one
    user's candidates all alike: it has no opinion on them, so the merged order is served,
    undiversified, as under ``order="retrieval"``; shifts from rules still apply."""
    rng = np.random.default_rng(8)
    user = FEATURE_NAMES.index("history_length")
    x = np.zeros((60 * 20, F), np.float32)
    x[:, user] = np.repeat(rng.random(60), 20)
    y = (x[:, user] > 0.5).astype(np.float32)
    y[::7] = 1.0  # every group has a positive, so the trees have something to learn
    ranker = LambdaRanker().fit(x, y, np.full(60, 20), FEATURE_NAMES, num_boost_round=10)
    pipe = RankingPipeline(ranker, stats, RankingConfig(0.5, 20, SPEC))
    inp = make_input(40)
    assert np.ptp(ranker.predict(pipe.features(inp))) == 0.0
    pos, scores, timings = pipe.rank(inp, 10)
    assert pos.tolist() == list(range(10))
    np.testing.assert_allclose(scores, inp.retrieval_score[:10])
    assert {"features", "model"} <= set(timings)
    shift = np.zeros(40)
    shift[25] = 50.0
    assert pipe.rank(inp, 10, shift=shift)[0].tolist() == [25, *range(9)]
    # a ranker with an opinion is not affected: the popularity-driven one diversifies
    ranked = RankingPipeline(train_ranker(FEATURE_NAMES), stats, RankingConfig(0.5, 20, SPEC))
    assert ranked.rank(inp, 10)[0].tolist() != list(range(10))
