"""The `leave-last-out` evaluation protocol and split export.

* Duplicate (user, item) pairs are collapsed to the latest event (``split.dedupe``).
* Every user with at least ``min_items`` distinct items holds out one item: the latest by
  timestamp. Ties are broken by the item's position in the catalog (the higher index counts
  as later), which is deterministic for a given dataset. Without timestamps, one item per
  user is drawn with a seeded RNG instead.
* Everything else is training data; each user's list is ranked over every item not in their
  training history.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from shortlist.common.vocab import Vocabulary
from shortlist.training.split import Events, holdout_last

PROTOCOLS = ("leave-last-out",)


def leave_last_out(ev: Events, has_timestamps: bool, min_items: int = 5,
                   seed: int = 42) -> np.ndarray:
    """Boolean mask of the held-out events."""
    if has_timestamps:
        return holdout_last(ev, 1, min_items)
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(ev), dtype=bool)
    order = np.lexsort((ev.items, ev.users))
    users = ev.users[order]
    bounds = np.flatnonzero(np.diff(users)) + 1
    for rows in np.split(order, bounds):
        if len(rows) >= min_items:
            mask[rows[rng.integers(len(rows))]] = True
    return mask


def export_split(directory: Path, users: Vocabulary, items: Vocabulary, train: Events,
                 test: Events) -> None:
    """Write train.csv and test.csv (user_id,item_id,weight,timestamp) with external ids."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, ev in (("train.csv", train), ("test.csv", test)):
        order = np.lexsort((ev.items, ev.timestamps, ev.users))
        with open(directory / name, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["user_id", "item_id", "weight", "timestamp"])
            for r in order.tolist():
                w.writerow([users.id(int(ev.users[r])), items.id(int(ev.items[r])),
                            f"{float(ev.weights[r]):g}", int(ev.timestamps[r])])
