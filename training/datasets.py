"""Dataset loaders: MovieLens latest-small (bundled), MovieLens 100K, and the generic format.

Generic format (a directory):
  interactions.csv  header ``user_id,item_id[,weight][,timestamp]``; weight defaults to 1,
                    timestamp (unix seconds) may be absent, in which case row order is used.
  items.csv         optional, header ``item_id,title,categories[,text]``; categories are
                    ``|``-separated.
Every loader returns the same ``Dataset`` so nothing downstream knows where data came from.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

BUNDLED = Path(__file__).resolve().parent.parent / "data"
DATASET_NAMES = ("ml-latest-small", "ml-100k")

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
]


class DatasetError(Exception):
    """A dataset cannot be found or parsed."""


@dataclass
class Items:
    """Item catalog: parallel lists indexed like ``item_ids``."""

    item_ids: list[str]
    titles: list[str]
    categories: list[list[str]]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.item_ids)


@dataclass
class Dataset:
    name: str
    user_ids: np.ndarray  # str, one per interaction
    item_ids: np.ndarray  # str, one per interaction
    weights: np.ndarray  # float32
    timestamps: np.ndarray  # int64 unix seconds (synthetic row order if has_timestamps is False)
    items: Items
    has_timestamps: bool = True
    fingerprint: str = ""
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.user_ids)


def _fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def resolve_path(spec: str) -> Path:
    """A dataset directory from a path or a known name (bundled, $SHORTLIST_DATA_DIR, shared)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if spec in DATASET_NAMES:
        roots = [Path(p) for p in os.environ.get("SHORTLIST_DATA_DIR", "").split(":") if p]
        roots += [BUNDLED, BUNDLED.parent.parent / "shared" / "datasets"]
        for root in roots:
            if (root / spec).is_dir():
                return root / spec
    raise DatasetError(
        f"dataset {spec!r} not found: pass a directory, or one of {', '.join(DATASET_NAMES)} "
        f"with the files under $SHORTLIST_DATA_DIR/{spec}"
    )


def load(spec: str) -> Dataset:
    """Load by name or directory, detecting the format from the files present."""
    path = resolve_path(spec)
    if (path / "ratings.csv").is_file() and (path / "movies.csv").is_file():
        ds = load_movielens_latest(path)
    elif (path / "u.data").is_file():
        ds = load_movielens_100k(path)
    elif (path / "interactions.csv").is_file():
        ds = load_generic(path)
    else:
        raise DatasetError(
            f"{path}: no ratings.csv+movies.csv, u.data or interactions.csv found"
        )
    logger.info(
        "dataset loaded",
        extra={"fields": {"dataset": ds.name, "interactions": len(ds),
                          "users": len(np.unique(ds.user_ids)), "items": len(ds.items)}},
    )
    return ds


def _complete_items(items: Items, interaction_items: np.ndarray) -> Items:
    """Add catalog rows for interacted items the item file does not describe."""
    known = set(items.item_ids)
    for item in dict.fromkeys(interaction_items.tolist()):
        if item not in known:
            items.item_ids.append(item)
            items.titles.append(item)
            items.categories.append([])
            items.texts.append("")
            known.add(item)
    return items


def load_movielens_latest(path: Path) -> Dataset:
    users, items, weights, stamps = [], [], [], []
    with open(path / "ratings.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            users.append(row["userId"])
            items.append(row["movieId"])
            weights.append(float(row["rating"]))
            stamps.append(int(row["timestamp"]))
    tags: dict[str, list[str]] = {}
    if (path / "tags.csv").is_file():
        with open(path / "tags.csv", newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                tags.setdefault(row["movieId"], []).append(row["tag"])
    catalog = Items([], [], [], [])
    with open(path / "movies.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            genres = [] if row["genres"] == "(no genres listed)" else row["genres"].split("|")
            catalog.item_ids.append(row["movieId"])
            catalog.titles.append(row["title"])
            catalog.categories.append(genres)
            catalog.texts.append(" ".join(tags.get(row["movieId"], [])))
    files = [p for p in (path / "ratings.csv", path / "movies.csv", path / "tags.csv")
             if p.is_file()]
    return _build(path.name, users, items, weights, stamps, catalog, True, files)


def load_movielens_100k(path: Path) -> Dataset:
    users, items, weights, stamps = [], [], [], []
    with open(path / "u.data", encoding="latin-1") as fh:
        for line in fh:
            parts = line.split("\t")
            if len(parts) < 4 or not parts[0].strip().isdigit():
                continue
            users.append(parts[0].strip())
            items.append(parts[1].strip())
            weights.append(float(parts[2]))
            stamps.append(int(parts[3]))
    catalog = Items([], [], [], [])
    files = [path / "u.data"]
    if (path / "u.item").is_file():
        files.append(path / "u.item")
        with open(path / "u.item", encoding="latin-1") as fh:
            for line in fh:
                parts = line.rstrip("\n").split("|")
                if len(parts) < 5 or not parts[0].strip().isdigit():
                    continue  # some copies carry a header row
                flags = parts[5:5 + len(ML100K_GENRES)]
                genres = [g for g, f in zip(ML100K_GENRES, flags, strict=False) if f == "1"]
                catalog.item_ids.append(parts[0].strip())
                catalog.titles.append(parts[1].strip())
                catalog.categories.append([g for g in genres if g != "unknown"])
                catalog.texts.append("")
    return _build(path.name, users, items, weights, stamps, catalog, True, files)


def load_generic(path: Path) -> Dataset:
    users, items, weights, stamps = [], [], [], []
    with open(path / "interactions.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or [])
        if not {"user_id", "item_id"} <= cols:
            raise DatasetError(f"{path}/interactions.csv: header needs user_id,item_id")
        has_w, has_t = "weight" in cols, "timestamp" in cols
        for i, row in enumerate(reader):
            users.append(row["user_id"])
            items.append(row["item_id"])
            weights.append(float(row["weight"]) if has_w and row["weight"] else 1.0)
            stamps.append(int(float(row["timestamp"])) if has_t and row["timestamp"] else i)
    catalog = Items([], [], [], [])
    files = [path / "interactions.csv"]
    if (path / "items.csv").is_file():
        files.append(path / "items.csv")
        with open(path / "items.csv", newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                cats = row.get("categories") or ""
                catalog.item_ids.append(row["item_id"])
                catalog.titles.append(row.get("title") or row["item_id"])
                catalog.categories.append([c for c in cats.split("|") if c])
                catalog.texts.append(row.get("text") or "")
    return _build(path.name, users, items, weights, stamps, catalog, has_t, files)


def _build(name, users, items, weights, stamps, catalog, has_ts, files) -> Dataset:
    if not users:
        raise DatasetError(f"{name}: no interactions")
    user_arr = np.asarray(users, dtype=np.str_)
    item_arr = np.asarray(items, dtype=np.str_)
    catalog = _complete_items(catalog, item_arr)
    return Dataset(
        name=name,
        user_ids=user_arr,
        item_ids=item_arr,
        weights=np.asarray(weights, dtype=np.float32),
        timestamps=np.asarray(stamps, dtype=np.int64),
        items=catalog,
        has_timestamps=has_ts,
        fingerprint=_fingerprint(files),
    )
