"""The synthetic generator: generic format, skew, topic structure, drift window, determinism."""

from __future__ import annotations

import numpy as np

from shortlist.training.datasets import load
from shortlist.training.synth import SPAN_S, START, generate


def test_synthetic_dataset_looks_like_interaction_data(tmp_path):
    out = generate(tmp_path / "s", n_users=400, n_items=300, n_interactions=12000,
                   n_topics=8, seed=3, chunk_users=150, progress=False)
    ds = load(str(out))
    assert abs(len(ds) - 12000) < 600  # per-user rounding
    assert len(ds.items) == 300 and all(ds.items.categories)
    assert all(t.strip() for t in ds.items.texts)
    assert ds.timestamps.min() >= START and ds.timestamps.max() <= START + SPAN_S
    assert (out / "users.txt").read_text().split() == [f"u{u}" for u in range(400)]
    # skewed popularity: the top 10% of items take far more than 10% of interactions
    counts = np.sort(np.unique(ds.item_ids, return_counts=True)[1])[::-1]
    assert counts[: len(counts) // 10].sum() > 0.3 * counts.sum()
    # users follow topics: on average most of a user's items share their top topic
    topic = {i: c[0] for i, c in zip(ds.items.item_ids, ds.items.categories, strict=True)}
    shares = []
    for u in np.unique(ds.user_ids)[:100]:
        topics = [topic[i] for i in ds.item_ids[ds.user_ids == u]]
        if len(topics) >= 5:
            shares.append(max(topics.count(t) for t in set(topics)) / len(topics))
    assert np.mean(shares) > 0.4


def test_same_seed_same_data(tmp_path):
    a = generate(tmp_path / "a", 50, 40, 500, 4, seed=9, progress=False)
    b = generate(tmp_path / "b", 50, 40, 500, 4, seed=9, progress=False)
    for name in ("interactions.csv", "items.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
