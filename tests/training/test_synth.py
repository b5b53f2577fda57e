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


def _friend_overlap(out) -> tuple[float, float]:
    """Share of each user's items that one of their friends also has, and the same for
    random pairs (the baseline)."""
    ds = load(str(out))
    items: dict[str, set[str]] = {}
    for u, i in zip(ds.user_ids.tolist(), ds.item_ids.tolist(), strict=True):
        items.setdefault(u, set()).add(i)
    friends: dict[str, list[str]] = {}
    for u, f in zip(ds.social.user_ids, ds.social.friend_ids, strict=True):
        friends.setdefault(u, []).append(f)
    rng = np.random.default_rng(0)
    ids = sorted(items)
    tied, random = [], []
    for u, fs in friends.items():
        if u not in items:
            continue
        mine = items[u]
        theirs = set().union(*(items.get(f, set()) for f in fs))
        others = set().union(*(items[ids[j]] for j in rng.integers(len(ids), size=len(fs))))
        tied.append(len(mine & theirs) / len(mine))
        random.append(len(mine & others) / len(mine))
    return float(np.mean(tied)), float(np.mean(random))


def test_planted_friends_share_items_and_random_ties_do_not(tmp_path):
    planted = generate(tmp_path / "p", 300, 400, 9000, 6, seed=4, progress=False, friends=5,
                       influence=0.3)
    control = generate(tmp_path / "c", 300, 400, 9000, 6, seed=4, progress=False, friends=5,
                       influence=0.0)
    lines = (planted / "social.csv").read_text().splitlines()
    assert lines[0] == "user_id,friend_id,weight" and len(lines) == 1 + 300 * 5
    tied, random = _friend_overlap(planted)
    assert tied > random + 0.08, (tied, random)
    tied, random = _friend_overlap(control)
    assert abs(tied - random) < 0.05, (tied, random)
    # copies come after the friend's event, inside the time span
    ds = load(str(planted))
    assert ds.timestamps.max() <= START + SPAN_S
    assert not (tmp_path / "none").exists()
    plain = generate(tmp_path / "none", 50, 40, 500, 4, seed=9, progress=False)
    assert not (plain / "social.csv").exists()
