"""`shortlist-train synth`: a synthetic dataset in the generic format, at any scale.

It is built to look like real interaction data, so that scale tests exercise every model:
  * topics (categories) that users follow: each user mixes one to three favourite topics;
  * skewed popularity: items are drawn Zipf-like within a topic, topics themselves are skewed;
  * drift: each topic's appeal waxes and wanes over the time span (a slow sine with its own
    phase), and every user is active in a window of that span;
  * titles, categories and text built from per-topic vocabularies, for the content model;
  * enough signal that a personalised model beats popularity (users stick to their topics);
  * optionally a social graph (``social.csv``): with ``influence`` > 0, friends share tastes
    (most share the user's main topic) and that share of each user's events repeats a recent
    event of a friend (tie-weighted), so friends' items predict the user's; with 0, ties are
    drawn at random and carry no signal (the control);
  * optionally event types (``events``: an ``event`` column), planted so that weighing them
    can matter. Most events are views, and views are noisy: besides the usual off-topic share,
    part of each user's views is one browsing session in a topic they do not follow, at one
    moment, which says nothing of what they do later. Purchases are a share of the events on
    the user's topics, most on their strongest one, so they point at what the user comes back
    to far more than views do. Each user rejects two topics they do not follow (popular ones:
    what one stumbles on): dislikes and skips of items there, and a view landing there is a
    rejection too, so a model counting rejections as positive is misled and one excluding
    them (or pushing away from them) is not. Under ``ratings`` a rejected item is rated low
    (0.5-2.5); under ``counts`` it was played once. With a social graph, repeating a friend's
    event is a view. The types are drawn from a random generator of their own, so without
    the option the data is byte for byte what it always was for the same seed.
Users are generated in chunks and streamed to disk, so memory stays bounded by the chunk (with
a social graph every event is held, since a user copies friends generated later).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from tqdm import tqdm

SPAN_S = 3 * 365 * 86400
START = 1_500_000_000
# Event types (``events``; see the module docstring), as shares of events.
NEGATIVE_SHARE = 0.12  # moved to a rejected topic (besides views that land in one)
DISLIKE_SHARE = 0.4  # of the rejections: dislikes (the rest are skips)
# purchases, by the event's topic: the user's strongest, another favourite, any other
PURCHASE_SHARE = {"top": 0.35, "favourite": 0.08, "other": 0.02}
BROWSE_SHARE = 0.3  # of the other views: the user's one browsing session
BROWSE_SESSION_S = 2 * 3600  # how long that session lasts
EVENT_NAMES = ("view", "purchase", "dislike", "skip")  # indexed by the codes below
VIEW, PURCHASE, DISLIKE, SKIP = range(4)
SYLLABLES = ("ka", "lo", "mi", "ra", "ten", "vo", "zu", "shi", "ber", "dan", "el", "or", "qua",
             "ny", "pe", "ro", "sa", "ti", "um", "wex")


def _word(rng: np.random.Generator) -> str:
    return "".join(rng.choice(SYLLABLES, int(rng.integers(2, 4))))


def generate(out: Path, n_users: int, n_items: int, n_interactions: int, n_topics: int = 40,
             seed: int = 42, chunk_users: int = 50_000, progress: bool = True,
             skew: float = 0.9, weights: str = "ratings", timestamps: bool = True,
             item_text: str = "full", friends: int = 0, influence: float = 0.0,
             events: bool = False) -> Path:
    """Write ``interactions.csv``, ``items.csv`` and ``users.txt`` into ``out``.

    Shapes for testing on data unlike MovieLens: ``skew`` is the Zipf exponent of item
    popularity within a topic (higher: a longer tail); ``weights`` "ratings" (0.5 to 5) or
    "counts" (heavy-tailed play counts); ``timestamps`` False writes no timestamp column;
    ``item_text`` "titles" writes titles only (no categories or text). ``friends`` ties per
    user in ``social.csv`` (0: none) and the ``influence`` they carry (see the module).
    ``events`` adds an ``event`` column with planted types (see the module).
    """
    if weights not in ("ratings", "counts") or item_text not in ("full", "titles"):
        raise ValueError(f"weights must be ratings or counts and item_text full or titles, "
                         f"got {weights!r}, {item_text!r}")
    rng = np.random.default_rng(seed)
    # Its own stream: without event types not one number is drawn from it, so the data is
    # byte-identical to what it was before the option existed.
    event_rng = np.random.default_rng([seed, 0x7E])
    out.mkdir(parents=True, exist_ok=True)
    n_topics = max(1, min(n_topics, n_items))
    topic_names = [f"topic{t:02d}-{_word(rng)}" for t in range(n_topics)]
    topic_words = [[_word(rng) for _ in range(12)] for _ in range(n_topics)]

    # Items: a topic each (skewed topic sizes), Zipf-like popularity within the topic.
    topic_share = rng.dirichlet(np.full(n_topics, 2.0))
    item_topic = rng.choice(n_topics, n_items, p=topic_share)
    item_pop = 1.0 / (1.0 + rng.permutation(n_items)) ** skew
    with open(out / "items.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["item_id", "title", "categories", "text"] if item_text == "full"
                   else ["item_id", "title"])
        for i in tqdm(range(n_items), desc="items", unit="item", disable=not progress):
            t = item_topic[i]
            words = rng.choice(topic_words[t], 4, replace=False)
            second = topic_names[(t + 1 + int(rng.integers(n_topics - 1))) % n_topics] \
                if n_topics > 1 and rng.random() < 0.2 else ""
            cats = topic_names[t] + (f"|{second}" if second else "")
            row = [f"i{i}", f"{words[0].title()} {words[1].title()} {i}", cats,
                   " ".join(words[2:]) + " " + _word(rng)]
            w.writerow(row if item_text == "full" else row[:2])
    members = [np.flatnonzero(item_topic == t) for t in range(n_topics)]
    cdfs = []
    for m in members:
        p = item_pop[m]
        cdfs.append(np.cumsum(p) / p.sum() if len(m) else np.zeros(0))
    phase = rng.uniform(0, 2 * np.pi, n_topics)

    # Users: activity is log-normal, scaled so the total is close to n_interactions.
    activity = rng.lognormal(0.0, 1.0, n_users)
    per_user = np.maximum(1, np.round(activity / activity.sum() * n_interactions)).astype(int)
    written = 0
    held: list[tuple[np.ndarray, ...]] = []  # every chunk, when a social graph needs them
    main_topic = np.zeros(n_users, np.int64)
    with open(out / "interactions.csv", "w", newline="") as fh:
        fh.write(("user_id,item_id,weight,timestamp" if timestamps
                  else "user_id,item_id,weight") + (",event\n" if events else "\n"))
        bar = tqdm(total=int(per_user.sum()), desc="interactions", unit="row",
                   disable=not progress)
        for lo in range(0, n_users, chunk_users):
            hi = min(n_users, lo + chunk_users)
            counts = per_user[lo:hi]
            n = int(counts.sum())
            user = np.repeat(np.arange(lo, hi), counts)
            favs = rng.choice(n_topics, (hi - lo, 3), p=topic_share)
            main_topic[lo:hi] = favs[:, 0]
            mix = rng.dirichlet(np.ones(3), hi - lo)
            start = rng.uniform(0, SPAN_S * 0.8, hi - lo)
            length = rng.uniform(0.02, 0.2, hi - lo) * SPAN_S
            offset = np.repeat(start, counts) + rng.random(n) * np.repeat(length, counts)
            stamps = START + offset.astype(np.int64)
            row = user - lo
            # topic: a favourite (weighted by the user's mix and its drifting appeal) or noise
            fav_w = mix[row] * (1.2 + np.sin(phase[favs[row]] + 2 * np.pi * offset[:, None]
                                             / SPAN_S))
            pick = (rng.random(n)[:, None] > np.cumsum(fav_w / fav_w.sum(1, keepdims=True),
                                                       axis=1)).sum(1)
            topic = favs[row, np.minimum(pick, 2)]
            noise = rng.random(n) < 0.15
            topic[noise] = rng.choice(n_topics, int(noise.sum()), p=topic_share)
            items = _draw_items(rng, topic, members, cdfs, n_items)
            if weights == "ratings":
                weight = np.clip(np.round(rng.normal(3.8, 0.9, n) * 2) / 2, 0.5, 5.0)
            else:  # play counts: most items once or twice, a few hundreds of times
                weight = np.minimum(rng.zipf(1.7, n), 1000).astype(np.float64)
            if events:
                # the user's strongest topic (a topic drawn twice as a favourite adds up)
                same = favs[:, :, None] == favs[:, None, :]
                top = favs[np.arange(hi - lo), (same * mix[:, None, :]).sum(2).argmax(1)]
                kind, items, typed, stamps = _plant_events(
                    event_rng, row, topic, stamps, favs, top, topic_share, members, cdfs,
                    n_items, items, weight, weights)
            if friends > 0:
                held.append((user, items, weight, stamps) + ((kind, typed) if events else ()))
            elif events:
                fh.write(_rows(user, items, typed, stamps if timestamps else None, kind))
            elif timestamps:
                fh.write("".join(f"u{u},i{i},{w:g},{s}\n" for u, i, w, s in
                                 zip(user.tolist(), items.tolist(), weight.tolist(),
                                     stamps.tolist(), strict=True)))
            else:
                fh.write("".join(f"u{u},i{i},{w:g}\n" for u, i, w in
                                 zip(user.tolist(), items.tolist(), weight.tolist(),
                                     strict=True)))
            written += n
            bar.update(n)
        bar.close()
        if friends > 0:
            user, items, weight, stamps, *typing = (np.concatenate(c)
                                                    for c in zip(*held, strict=True))
            items, stamps, copied = _plant_friends(out, rng, n_users, main_topic, friends,
                                                   influence, user, items, stamps)
            if events:
                # Repeating a friend's event is seeing what they had: a view, with the row's
                # own untyped weight (not the low rating of a rejection it replaced).
                kind, typed = typing
                kind[copied], typed[copied] = VIEW, weight[copied]
                fh.write(_rows(user, items, typed, stamps if timestamps else None, kind))
            else:
                rows = zip(user.tolist(), items.tolist(), weight.tolist(), stamps.tolist(),
                           strict=True)
                fh.write("".join(f"u{u},i{i},{w:g},{s}\n" if timestamps
                                 else f"u{u},i{i},{w:g}\n" for u, i, w, s in rows))
    # The user ids, one per line: what `shortlist-bench --users` takes.
    (out / "users.txt").write_text("".join(f"u{u}\n" for u in range(n_users)))
    return out


def _plant_friends(out: Path, rng: np.random.Generator, n_users: int, main_topic: np.ndarray,
                   friends: int, influence: float, user: np.ndarray, items: np.ndarray,
                   stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Write ``social.csv`` and return the events' items and timestamps with ``influence`` of
    each user's events replaced by a copy of a friend's event, a little later (and the rows
    replaced, which event types make views)."""
    by_topic: dict[int, np.ndarray] = {int(t): np.flatnonzero(main_topic == t)
                                       for t in np.unique(main_topic)}
    ties = np.zeros((n_users, friends), np.int64)
    for u in range(n_users):
        pool = by_topic[int(main_topic[u])]
        same = influence > 0 and len(pool) > 1
        for j in range(friends):
            if same and rng.random() < 0.8:
                f = int(pool[rng.integers(len(pool))])
            else:
                f = int(rng.integers(n_users))
            ties[u, j] = f if f != u else (u + 1) % n_users
    strength = rng.integers(1, 4, (n_users, friends))
    with open(out / "social.csv", "w", newline="") as fh:
        fh.write("user_id,friend_id,weight\n")
        fh.write("".join(f"u{u},u{f},{w}\n" for u in range(n_users)
                         for f, w in zip(ties[u].tolist(), strength[u].tolist(), strict=True)))
    if influence <= 0:
        return items, stamps, np.zeros(0, np.int64)
    order = np.argsort(user, kind="stable")
    starts = np.searchsorted(user[order], np.arange(n_users + 1))
    items, stamps = items.copy(), stamps.copy()
    copy = np.flatnonzero(rng.random(len(user)) < influence)
    p = strength / strength.sum(axis=1, keepdims=True)
    copied = []
    for row in copy.tolist():
        u = int(user[row])
        f = int(ties[u, rng.choice(friends, p=p[u])])
        lo, hi = starts[f], starts[f + 1]
        if hi == lo:
            continue
        src = order[lo + int(rng.integers(hi - lo))]
        items[row] = items[src]
        stamps[row] = min(stamps[src] + int(rng.integers(3600, 7 * 86400)), START + SPAN_S)
        copied.append(row)
    return items, stamps, np.asarray(copied, np.int64)


def _draw_items(rng: np.random.Generator, topic: np.ndarray, members: list[np.ndarray],
                cdfs: list[np.ndarray], n_items: int) -> np.ndarray:
    """An item per event in its topic, by the topic's Zipf-like popularity (any item when the
    topic has none)."""
    items = np.empty(len(topic), dtype=np.int64)
    for t in np.unique(topic):
        sel = np.flatnonzero(topic == t)
        if len(members[t]) == 0:
            items[sel] = rng.integers(n_items, size=len(sel))
            continue
        pos = np.searchsorted(cdfs[t], rng.random(len(sel)))
        items[sel] = members[t][np.minimum(pos, len(members[t]) - 1)]
    return items


def _unfollowed(rng: np.random.Generator, favs: np.ndarray, topic_share: np.ndarray,
                tries: int = 8) -> np.ndarray:
    """Two topics per user outside their favourites, popularity-weighted (the popular ones
    are what a user stumbles on); -1 where ``tries`` draws found none (few topics)."""
    candidates = rng.choice(len(topic_share), (len(favs), tries), p=topic_share)
    ok = ~(candidates[:, :, None] == favs[:, None, :]).any(2)
    rows = np.arange(len(favs))
    first = candidates[rows, ok.argmax(1)]
    last = candidates[rows, tries - 1 - ok[:, ::-1].argmax(1)]
    return np.where(ok.any(1)[:, None], np.stack([first, last], 1), -1)


def _plant_events(rng: np.random.Generator, row: np.ndarray, topic: np.ndarray,
                  stamps: np.ndarray, favs: np.ndarray, top: np.ndarray,
                  topic_share: np.ndarray, members: list[np.ndarray], cdfs: list[np.ndarray],
                  n_items: int, items: np.ndarray, weight: np.ndarray, weights: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(type code, item, weight, timestamp) per event; ``row`` indexes ``favs`` and ``top``
    (the chunk's users) per event. See the module docstring for the structure."""
    n = len(row)
    kind = np.full(n, VIEW, np.int8)
    items, weight, topic, stamps = items.copy(), weight.copy(), topic.copy(), stamps.copy()
    rejects = _unfollowed(rng, favs, topic_share)  # per user (2 topics); -1: none
    planted = (rng.random(n) < NEGATIVE_SHARE) & (rejects[row, 0] >= 0)
    topic[planted] = rejects[row[planted], rng.integers(2, size=int(planted.sum()))]
    items[planted] = _draw_items(rng, topic[planted], members, cdfs, n_items)
    share = np.where(topic == top[row], PURCHASE_SHARE["top"], np.where(
        (topic[:, None] == favs[row]).any(1), PURCHASE_SHARE["favourite"],
        PURCHASE_SHARE["other"]))
    kind[~planted & ~(topic[:, None] == rejects[row]).any(1) & (rng.random(n) < share)] = \
        PURCHASE
    # Browsing: one session per user, in a topic they neither follow nor reject, at a moment
    # of their activity: noise that says nothing of what they do later.
    browse = (kind == VIEW) & ~planted & (rng.random(n) < BROWSE_SHARE)
    session = _unfollowed(rng, np.concatenate([favs, rejects], 1), topic_share)[:, 0]
    browse &= session[row] >= 0
    first = np.full(len(favs), np.iinfo(np.int64).max)
    last = np.zeros(len(favs), np.int64)
    np.minimum.at(first, row, stamps)
    np.maximum.at(last, row, stamps)
    moment = first + (rng.random(len(favs)) * (last - first + 1)).astype(np.int64)
    k = int(browse.sum())
    topic[browse] = session[row[browse]]
    items[browse] = _draw_items(rng, topic[browse], members, cdfs, n_items)
    stamps[browse] = np.minimum(moment[row[browse]] + rng.integers(BROWSE_SESSION_S, size=k),
                                START + SPAN_S)
    rejected = planted | ((kind == VIEW) & (topic[:, None] == rejects[row]).any(1))
    k = int(rejected.sum())
    kind[rejected] = np.where(rng.random(k) < DISLIKE_SHARE, DISLIKE, SKIP)
    weight[rejected] = (np.clip(np.round(rng.normal(1.5, 0.6, k) * 2) / 2, 0.5, 2.5)
                        if weights == "ratings" else 1.0)
    return kind, items, weight, stamps


def _rows(user: np.ndarray, items: np.ndarray, weight: np.ndarray, stamps: np.ndarray | None,
          kind: np.ndarray) -> str:
    """CSV rows with an event column; no timestamp column when ``stamps`` is None."""
    names = [EVENT_NAMES[k] for k in kind.tolist()]
    if stamps is None:
        return "".join(f"u{u},i{i},{w:g},{e}\n" for u, i, w, e in
                       zip(user.tolist(), items.tolist(), weight.tolist(), names, strict=True))
    return "".join(f"u{u},i{i},{w:g},{s},{e}\n" for u, i, w, s, e in
                   zip(user.tolist(), items.tolist(), weight.tolist(), stamps.tolist(), names,
                       strict=True))


def register(sub) -> None:
    p = sub.add_parser("synth", help="write a synthetic dataset in the generic format")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--items", type=int, default=2_000)
    p.add_argument("--interactions", type=int, default=200_000)
    p.add_argument("--topics", type=int, default=40)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--skew", type=float, default=0.9,
                   help="Zipf exponent of item popularity within a topic (higher: longer tail)")
    p.add_argument("--weights", choices=("ratings", "counts"), default="ratings",
                   help="ratings 0.5-5, or heavy-tailed play counts")
    p.add_argument("--no-timestamps", action="store_true", help="write no timestamp column")
    p.add_argument("--titles-only", action="store_true",
                   help="items.csv with titles only (no categories or text)")
    p.add_argument("--friends", type=int, default=0,
                   help="write social.csv with this many ties per user (0: none)")
    p.add_argument("--influence", type=float, default=0.0,
                   help="with --friends: the share of each user's events that repeat a "
                        "friend's (and friends share tastes); 0: random ties, no signal")
    p.add_argument("--events", action="store_true",
                   help="write an event column with planted types: views (noisy: each "
                        "user also browses one unrelated topic once), purchases concentrated "
                        "on each user's strongest topic, dislikes and skips of items in two "
                        "topics each user rejects (without it the data is unchanged for the "
                        "same seed)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    generate(args.out, args.users, args.items, args.interactions, args.topics, args.seed,
             progress=not args.quiet, skew=args.skew, weights=args.weights,
             timestamps=not args.no_timestamps,
             item_text="titles" if args.titles_only else "full", friends=args.friends,
             influence=args.influence, events=args.events)
    print(f"wrote {args.out}/interactions.csv and items.csv")
    return 0
