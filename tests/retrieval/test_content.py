"""Content model: TF-IDF + SVD item vectors, serving-time embedding, taste vectors."""

from __future__ import annotations

import numpy as np
import pytest

from shortlist.retrieval.content import ContentModel, item_document, normalize_rows
from shortlist.retrieval.trending import DAY

TOPICS = {
    "space": "rocket orbit planet astronaut galaxy",
    "cooking": "recipe kitchen chef oven flavour",
    "football": "goal striker stadium referee league",
}


def _docs() -> tuple[list[str], list[str]]:
    """Four items per topic; each item gets three of its topic's five words plus a unique id."""
    rng = np.random.default_rng(0)
    docs, labels = [], []
    for topic, words in TOPICS.items():
        vocab = words.split()
        for j in range(4):
            picked = rng.choice(vocab, 3, replace=False)
            docs.append(item_document(f"{topic.title()} Item {j}", [topic], " ".join(picked)))
            labels.append(topic)
    return docs, labels


@pytest.fixture(scope="module")
def model_and_labels() -> tuple[ContentModel, np.ndarray, list[str]]:
    docs, labels = _docs()
    return ContentModel(dim=6, seed=1).fit(docs), np.asarray(labels), docs


def test_item_document():
    doc = item_document("Toy Story (1995)", ["Science Fiction", "Sci-Fi"], "toys")
    assert doc.count("cat_science_fiction") == 2
    assert doc.count("cat_sci_fi") == 2
    assert "decade_1990s" in doc and doc.endswith("toys")
    assert "decade" not in item_document("No Year", [], "")


def test_vectors_are_unit_norm(model_and_labels):
    model, labels, _ = model_and_labels
    assert model.vectors.shape == (len(labels), model.dim)
    assert model.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(model.vectors, axis=1), 1.0, rtol=1e-5)


def test_items_sharing_words_are_nearer(model_and_labels):
    model, labels, _ = model_and_labels
    sim = model.vectors @ model.vectors.T
    for i in range(len(labels)):
        same = (labels == labels[i]) & (np.arange(len(labels)) != i)
        other = labels != labels[i]
        assert sim[i, same].min() > sim[i, other].max(), i


def test_embed_reproduces_stored_vectors(model_and_labels):
    model, _, docs = model_and_labels
    embedded = model.embed(docs)
    cos = np.einsum("ij,ij->i", embedded, model.vectors)
    np.testing.assert_allclose(cos, 1.0, atol=1e-5)
    np.testing.assert_allclose(embedded, model.vectors, atol=1e-5)


def test_embed_new_document_lands_near_its_topic(model_and_labels):
    model, labels, _ = model_and_labels
    new = model.embed([item_document("Brand New", ["cooking"], "chef oven unknownword")])[0]
    assert np.linalg.norm(new) == pytest.approx(1.0, abs=1e-5)
    assert labels[int(np.argmax(model.vectors @ new))] == "cooking"
    # No known term at all: an all-zero vector (not NaN).
    zero = model.embed(["zzzz qqqq"])[0]
    np.testing.assert_array_equal(zero, np.zeros(model.dim, np.float32))


def test_save_load_round_trip(tmp_path, model_and_labels):
    model, _, docs = model_and_labels
    model.save(tmp_path / "content")
    loaded = ContentModel.load(tmp_path / "content")
    assert loaded.dim == model.dim
    assert loaded.vocabulary == model.vocabulary
    np.testing.assert_array_equal(loaded.vectors, model.vectors)
    np.testing.assert_array_equal(loaded.components, model.components)
    np.testing.assert_array_equal(loaded.embed(docs[:3]), model.embed(docs[:3]))


def test_taste_weights_recent_items_more(model_and_labels):
    model, labels, _ = model_and_labels
    a, b = int(np.flatnonzero(labels == "space")[0]), int(np.flatnonzero(labels == "cooking")[0])
    va, vb = model.vectors[a], model.vectors[b]
    # a is fresh, b is three half-lives old: taste ~ va + vb / 8.
    taste = model.taste(np.array([a, b]), np.array([0.0, 3 * 10 * DAY]), half_life_days=10.0)
    expected = va + vb / 8
    np.testing.assert_allclose(taste, expected / np.linalg.norm(expected), atol=1e-5)
    assert taste @ va > taste @ vb
    flipped = model.taste(np.array([a, b]), np.array([3 * 10 * DAY, 0.0]), half_life_days=10.0)
    assert flipped @ vb > flipped @ va
    # Without decay both count the same.
    even = model.taste(np.array([a, b]), np.array([0.0, 1e9]), half_life_days=0.0)
    assert even @ va == pytest.approx(even @ vb, abs=1e-5)


def test_a_disliked_item_counts_against_its_direction(model_and_labels):
    model, labels, _ = model_and_labels
    a, b = int(np.flatnonzero(labels == "space")[0]), int(np.flatnonzero(labels == "cooking")[0])
    va, vb = model.vectors[a], model.vectors[b]
    liked = model.taste(np.array([a]), np.zeros(1), 0.0)
    pushed = model.taste(np.array([a, b]), np.zeros(2), 0.0, signs=np.array([1.0, -0.5]))
    expected = va - vb / 2
    np.testing.assert_allclose(pushed, expected / np.linalg.norm(expected), atol=1e-5)
    assert pushed @ vb < liked @ vb


def test_taste_of_nothing_is_zero(model_and_labels):
    model, _, _ = model_and_labels
    taste = model.taste(np.zeros(0, np.int64), np.zeros(0), 30.0)
    np.testing.assert_array_equal(taste, np.zeros(model.dim, np.float32))


def test_dim_is_capped_by_data():
    model = ContentModel(dim=64).fit(["alpha beta", "beta gamma", "gamma delta"])
    assert model.dim == 2 and model.vectors.shape == (3, 2)


def test_normalize_rows_keeps_zero_rows():
    out = normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
