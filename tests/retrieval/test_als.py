"""ALS (implicit) and least-squares fold-in on a block-structured interaction matrix."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.cpu.als import user_factor

from shortlist.retrieval.als import AlsModel

BLOCKS, PER_BLOCK, USERS_PER_BLOCK, TAKE = 3, 12, 40, 6


def _block_matrix(seed: int = 0) -> sp.csr_matrix:
    """User u only consumes items of block u % 3 (6 of its 12 items, chosen at random)."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(BLOCKS * USERS_PER_BLOCK):
        b = u % BLOCKS
        picked = rng.choice(np.arange(b * PER_BLOCK, (b + 1) * PER_BLOCK), TAKE, replace=False)
        rows += [u] * TAKE
        cols += picked.tolist()
    shape = (BLOCKS * USERS_PER_BLOCK, BLOCKS * PER_BLOCK)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)


@pytest.fixture(scope="module")
def matrix() -> sp.csr_matrix:
    return _block_matrix()


@pytest.fixture(scope="module")
def model(matrix) -> AlsModel:
    return AlsModel(factors=4, regularization=0.05, alpha=2.0, iterations=15, seed=3).fit(matrix)


def test_shapes(model, matrix):
    assert model.user_factors.shape == (matrix.shape[0], 4)
    assert model.item_factors.shape == (matrix.shape[1], 4)
    assert model.item_factors.dtype == np.float32 and model.item_factors.flags.c_contiguous


def test_co_consumed_items_score_higher(model, matrix):
    item_block = np.arange(matrix.shape[1]) // PER_BLOCK
    top_in_block = []
    for u in range(matrix.shape[0]):
        scores = model.item_factors @ model.user_factors[u]
        consumed = np.zeros(matrix.shape[1], dtype=bool)
        consumed[matrix[u].indices] = True
        mine = item_block == u % BLOCKS
        # Items other users of the block consumed beat the other blocks' items.
        assert scores[mine & ~consumed].mean() > scores[~mine].mean() + 0.2, u
        assert scores[consumed].min() > scores[~mine].max(), u
        unseen = np.where(consumed, -np.inf, scores)
        top_in_block.append(mine[np.argsort(-unseen)[:3]].all())
    assert np.mean(top_in_block) >= 0.9


def test_fold_in_reproduces_trained_user_factors(model, matrix):
    for u in range(0, matrix.shape[0], 7):
        items = matrix[u].indices
        folded = model.fold_in(items, np.ones(len(items), np.float32))
        trained = model.user_factors[u]
        cos = folded @ trained / (np.linalg.norm(folded) * np.linalg.norm(trained))
        assert cos > 0.99, u


def test_fold_in_matches_implicit_exact_solver(model, matrix):
    """Same normal equations as implicit (confidence = alpha * strength), solved exactly."""
    y = model.item_factors
    conf = (matrix * model.alpha).tocsr().astype(np.float32)
    strengths = np.linspace(0.5, 3.0, TAKE, dtype=np.float32)
    weighted = sp.csr_matrix(matrix, copy=True)
    for u in (0, 1, 50):
        items = matrix[u].indices
        expected = user_factor(y, y.T @ y, conf, u, model.regularization, model.factors)
        got = model.fold_in(items, np.ones(len(items), np.float32))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        # Unequal strengths too.
        weighted.data[weighted.indptr[u]:weighted.indptr[u + 1]] = strengths
        expected = user_factor(y, y.T @ y, (weighted * model.alpha).tocsr(), u,
                               model.regularization, model.factors)
        np.testing.assert_allclose(model.fold_in(items, strengths), expected,
                                   rtol=1e-4, atol=1e-5)


def test_fold_in_of_nothing_is_zero(model):
    np.testing.assert_array_equal(model.fold_in(np.zeros(0, np.int64), np.zeros(0)),
                                  np.zeros(4, np.float32))


def test_save_load_round_trip(tmp_path, model, matrix):
    model.save(tmp_path / "als")
    loaded = AlsModel.load(tmp_path / "als")
    np.testing.assert_array_equal(loaded.user_factors, model.user_factors)
    np.testing.assert_array_equal(loaded.item_factors, model.item_factors)
    assert (loaded.factors, loaded.regularization, loaded.alpha, loaded.iterations,
            loaded.seed) == (4, 0.05, 2.0, 15, 3)
    items = matrix[5].indices
    np.testing.assert_allclose(loaded.fold_in(items, np.ones(len(items))),
                               model.fold_in(items, np.ones(len(items))), rtol=1e-6)


def test_fit_is_deterministic(matrix, model):
    again = AlsModel(factors=4, regularization=0.05, alpha=2.0, iterations=15, seed=3).fit(matrix)
    np.testing.assert_allclose(again.item_factors, model.item_factors, rtol=1e-5, atol=1e-6)


def test_warm_start_continues_from_the_given_factors(matrix, model):
    """A warm start from a converged fit stays there; a cold fit of one iteration does not."""
    scores = model.user_factors @ model.item_factors.T
    warm = AlsModel(factors=4, regularization=0.05, alpha=2.0, iterations=1, seed=3).fit(
        matrix, init=model)
    cold = AlsModel(factors=4, regularization=0.05, alpha=2.0, iterations=1, seed=3).fit(matrix)
    warm_gap = np.abs(warm.user_factors @ warm.item_factors.T - scores).max()
    cold_gap = np.abs(cold.user_factors @ cold.item_factors.T - scores).max()
    assert warm_gap < 0.1 * cold_gap
    # the initial model is not modified
    np.testing.assert_array_equal(scores, model.user_factors @ model.item_factors.T)


def test_warm_start_refuses_another_shape(matrix, model):
    small = AlsModel(factors=4, iterations=1).fit(matrix[:10])
    with pytest.raises(ValueError, match="same shape"):
        AlsModel(factors=4, iterations=1).fit(matrix, init=small)


def test_a_negative_strength_pushes_the_folded_in_vector_away_from_the_item_and_its_block(
        model):
    liked = np.array([0, 1, 2])  # block 0
    plain = model.fold_in(liked, np.ones(3))
    disliked = 5  # also block 0
    pushed = model.fold_in(np.append(liked, disliked), np.array([1.0, 1.0, 1.0, -3.0]))
    scores_plain, scores_pushed = model.item_factors @ plain, model.item_factors @ pushed
    assert scores_pushed[disliked] < scores_plain[disliked]
    others = np.setdiff1d(np.arange(PER_BLOCK), np.append(liked, disliked))
    assert scores_pushed[others].mean() < scores_plain[others].mean()
