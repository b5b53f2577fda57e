"""The synthetic generator: generic format, skew, topic structure, drift window, determinism."""

from __future__ import annotations

import numpy as np
import pytest

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


# ---------------------------------------------------------------- event types

def _topic_shares(ds) -> dict[str, np.ndarray]:
    """Per event type: the share of the user's positive events (views, purchases) that lie in
    the event's topic, and whether that topic is the user's most frequent positive one."""
    names = np.asarray(ds.event_names)[ds.event_codes]
    topic = dict(zip(ds.items.item_ids, (c[0] for c in ds.items.categories), strict=True))
    topics = np.asarray([topic[i] for i in ds.item_ids.tolist()])
    users = ds.user_ids
    positive = np.isin(names, ["view", "purchase"])
    freq: dict[str, list[float]] = {}
    top: dict[str, list[bool]] = {}
    for u in np.unique(users):
        mine = users == u
        kinds, counts = np.unique(topics[mine & positive], return_counts=True)
        if counts.sum() < 10:
            continue
        share = dict(zip(kinds.tolist(), (counts / counts.sum()).tolist(), strict=True))
        main = kinds[counts.argmax()]
        for name in ("view", "purchase", "dislike", "skip"):
            sel = topics[mine & (names == name)]
            freq.setdefault(name, []).extend(share.get(t, 0.0) for t in sel.tolist())
            top.setdefault(name, []).extend((sel == main).tolist())
    return {f"{k}_share": np.asarray(v) for k, v in freq.items()} | {
        f"{k}_main": np.asarray(v) for k, v in top.items()}


def test_event_types_are_planted_with_structure(tmp_path):
    out = generate(tmp_path / "s", n_users=400, n_items=300, n_interactions=12000,
                   n_topics=8, seed=3, chunk_users=150, progress=False, events=True)
    assert (out / "interactions.csv").read_text().splitlines()[0] == (
        "user_id,item_id,weight,timestamp,event")
    ds = load(str(out))
    assert sorted(ds.event_names) == ["dislike", "purchase", "skip", "view"]
    names = np.asarray(ds.event_names)[ds.event_codes]
    share = {n: float(np.mean(names == n)) for n in ds.event_names}
    assert share["view"] > 0.5 and 0.1 < share["purchase"] < 0.3
    assert 0.05 < share["dislike"] + share["skip"] < 0.3
    assert ds.timestamps.min() >= START and ds.timestamps.max() <= START + SPAN_S
    # rejected items were rated low; purchases and views as usual
    assert ds.weights[np.isin(names, ["dislike", "skip"])].max() <= 2.5
    assert ds.weights[names == "purchase"].mean() > 3
    s = _topic_shares(ds)
    # purchases concentrate on the user's main topic far more than views (which browse)
    assert s["purchase_main"].mean() > s["view_main"].mean() + 0.25, s
    assert s["purchase_share"].mean() > s["view_share"].mean() + 0.1
    # rejections are of topics the user never engages with positively
    for name in ("dislike", "skip"):
        assert s[f"{name}_share"].mean() < 0.02 and s[f"{name}_main"].mean() < 0.02


def test_event_types_with_counts_friends_and_no_time(tmp_path):
    out = generate(tmp_path / "c", 120, 100, 3000, 6, seed=2, progress=False,
                   weights="counts", timestamps=False, friends=3, influence=0.3, events=True)
    assert (out / "interactions.csv").read_text().splitlines()[0] == (
        "user_id,item_id,weight,event")
    ds = load(str(out))
    assert not ds.has_timestamps and ds.social is not None
    names = np.asarray(ds.event_names)[ds.event_codes]
    assert set(names.tolist()) == {"view", "purchase", "dislike", "skip"}
    assert (ds.weights[np.isin(names, ["dislike", "skip"])] == 1).all()


def test_without_event_types_the_data_is_unchanged(tmp_path):
    """The types come from a generator of their own: the option off draws nothing from it and
    the data is byte for byte what it was; on, the catalog and who acted are the same."""
    kw = dict(n_users=80, n_items=60, n_interactions=1500, n_topics=5, seed=11,
              progress=False)
    default = generate(tmp_path / "default", **kw)
    off = generate(tmp_path / "off", **kw, events=False)
    on = generate(tmp_path / "on", **kw, events=True)
    for name in ("interactions.csv", "items.csv", "users.txt"):
        assert (default / name).read_bytes() == (off / name).read_bytes()
    assert (default / "items.csv").read_bytes() == (on / "items.csv").read_bytes()
    plain = (default / "interactions.csv").read_text().splitlines()
    typed = (on / "interactions.csv").read_text().splitlines()
    assert plain[0] == "user_id,item_id,weight,timestamp"
    assert [r.split(",")[0] for r in plain[1:]] == [r.split(",")[0] for r in typed[1:]]
    assert load(str(default)).event_codes is None
    for friends in (0, 2):
        a = generate(tmp_path / f"a{friends}", **kw, friends=friends, events=True)
        b = generate(tmp_path / f"b{friends}", **kw, friends=friends, events=True)
        assert (a / "interactions.csv").read_bytes() == (b / "interactions.csv").read_bytes()


def test_synth_command_takes_events(tmp_path, capsys):
    from shortlist.training.__main__ import main

    assert main(["synth", "--users", "30", "--items", "20", "--interactions", "300",
                 "--topics", "4", "--events", "--quiet", "--out", str(tmp_path / "d")]) == 0
    assert load(str(tmp_path / "d")).event_codes is not None
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    assert "--events" in capsys.readouterr().out
