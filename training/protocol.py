"""The evaluation protocols and split export.

* Duplicate (user, item) pairs are collapsed to the latest event (``split.dedupe``).
* ``leave-last-out``: every user with at least ``min_items`` distinct items holds out one
  item, the latest by timestamp. Ties are broken by the item's position in the catalog (the
  higher index counts as later), which is deterministic for a given dataset. Data without
  timestamps has no "latest": one item per user is drawn with a seeded RNG instead.
* ``random-holdout``: one item per eligible user drawn with a seeded RNG, whatever the time.
  The default for data without timestamps.
* Everything else is training data; each user's list is ranked over every item not in their
  training history. Training carves its own validation and label splits the same way.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from shortlist.common.catalog import ItemCatalog
from shortlist.common.vocab import Vocabulary
from shortlist.training.split import Events, holdout

PROTOCOLS = ("leave-last-out", "random-holdout")


def default_protocol(has_timestamps: bool) -> str:
    """Predicting the next item is the honest test when there is time; else a random one."""
    return "leave-last-out" if has_timestamps else "random-holdout"


def by_time(protocol: str, has_timestamps: bool) -> bool:
    """Whether ``protocol`` carves by time on this data (else by seeded random choice)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    return protocol == "leave-last-out" and has_timestamps


def holdout_mask(ev: Events, protocol: str, has_timestamps: bool, min_items: int = 5,
              seed: int = 42) -> np.ndarray:
    """Boolean mask of the held-out test events: one item per eligible user."""
    return holdout(ev, 1, min_items, by_time(protocol, has_timestamps), seed)


def export_split(directory: Path, users: Vocabulary, catalog: ItemCatalog, train: Events,
                 test: Events, has_timestamps: bool = True) -> None:
    """Write the split as a dataset in the generic format, so that any library (and
    ``shortlist-train fit --dataset DIR``) can train on exactly the training part:
    ``interactions.csv`` (the training events), ``items.csv`` (the whole catalog, in index
    order) and ``test.csv`` (the held-out events). Columns are
    ``user_id,item_id,weight[,timestamp]``; without real time there is no timestamp column.
    """
    directory.mkdir(parents=True, exist_ok=True)
    header = ["user_id", "item_id", "weight"] + (["timestamp"] if has_timestamps else [])
    for name, ev in (("interactions.csv", train), ("test.csv", test)):
        order = np.lexsort((ev.items, ev.timestamps, ev.users))
        with open(directory / name, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for r in order.tolist():
                row = [users.id(int(ev.users[r])), catalog.vocab.id(int(ev.items[r])),
                       f"{float(ev.weights[r]):.9g}"]
                w.writerow(row + [int(ev.timestamps[r])] if has_timestamps else row)
    with open(directory / "items.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["item_id", "title", "categories", "text"])
        for i in range(len(catalog)):
            w.writerow([catalog.vocab.id(i), catalog.titles[i], "|".join(catalog.categories[i]),
                        catalog.texts[i]])
