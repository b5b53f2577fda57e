"""Why an item was ranked where it was: the features that moved its score, and the user's
item it resembles most.

Contributions are LightGBM's own (``pred_contrib``: TreeSHAP values in the score's log-odds),
so they add up, with the bias, to the score the item was ranked by; a hand-made attribution
could disagree with the model it explains. The names are translated from the feature names
the spec derives, so a new generator or event type is described without an edit here.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

TOP = 3

# Every fixed feature of ranking.features (a test checks none is missing).
FIXED = {
    "n_sources": "number of generators that proposed it",
    "retrieval_rank": "position in the merged candidates",
    "retrieval_score": "merged retrieval score",
    "popularity": "popularity",
    "trending": "popular right now",
    "pop_at_user_time": "popularity when the user was last active",
    "item_age_days": "how new the item is",
    "item_age_at_user_time": "how new the item was when the user was last active",
    "history_length": "how much the user has done",
    "genre_affinity": "match with the user's categories",
}
_SUFFIXES = {
    "_score": "{} score",
    "_rank": "{} rank",
    "_affinity": "{}'s affinity of the user for it",
    "_recent5_sim_max": "{} similarity to one of the user's five latest items",
    "_recent_sim": "{} similarity to the user's latest item",
    "_history_sim_max": "{} similarity to the closest of the user's items",
    "_history_sim_mean": "{} similarity to the user's items on average",
}


def describe(feature: str) -> str:
    """The feature in words: "als_score" -> "als score", "events_purchase" -> "how often the
    item got purchase events"."""
    if feature in FIXED:
        return FIXED[feature]
    if feature.startswith("events_"):
        return f"how often the item got {feature.removeprefix('events_')} events"
    for suffix, text in _SUFFIXES.items():
        if feature.endswith(suffix):
            return text.format(feature.removesuffix(suffix))
    return feature.replace("_", " ")


def contributions(booster: lgb.Booster, x: np.ndarray, names: list[str],
                  top: int = TOP) -> list[list[tuple[str, str, float]]]:
    """Per row of ``x``: the ``top`` features with the largest contributions by magnitude,
    as (name, description, contribution); features that did not move the score are left
    out."""
    if len(x) == 0:
        return []
    contrib = np.asarray(booster.predict(x, pred_contrib=True, num_threads=1))[:, :-1]
    out = []
    for row in contrib:
        best = np.argsort(-np.abs(row), kind="stable")[:top]
        out.append([(names[j], describe(names[j]), float(row[j])) for j in best.tolist()
                    if row[j] != 0])
    return out


def closest_items(items: np.ndarray, recent: np.ndarray, space: np.ndarray | None
                  ) -> np.ndarray:
    """For each item, the index of the ``recent`` item most similar to it in ``space`` (unit
    vectors), or -1 when there is nothing to compare (no recent item, no space, or no
    similarity at all)."""
    items = np.asarray(items, dtype=np.int64)
    out = np.full(len(items), -1, np.int64)
    if space is None or len(items) == 0:
        return out
    recent = np.asarray(recent, dtype=np.int64)
    recent = recent[(recent >= 0) & (recent < len(space))]
    known = (items >= 0) & (items < len(space))
    if len(recent) == 0 or not known.any():
        return out
    sims = space[items[known]] @ space[recent].T
    best = sims.argmax(axis=1)
    found = sims[np.arange(len(best)), best] > 0
    out[np.flatnonzero(known)[found]] = recent[best[found]]
    return out
