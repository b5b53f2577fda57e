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

from shortlist.common.vocab import Vocabulary

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


def encode_ids(strings) -> tuple[np.ndarray, list[str]]:
    """(codes, distinct values in first-seen order) of a sequence of string ids."""
    vocab, codes = Vocabulary.from_values(strings)
    return codes, vocab.all_ids


@dataclass
class Dataset:
    """Interactions with dictionary-encoded ids: codes per row plus the distinct values.

    At 20M rows one Python string per id and row costs gigabytes and minutes to build;
    codes cost 8 bytes a row and the distinct values are a fraction of that.
    """

    name: str
    user_codes: np.ndarray  # int64, one per interaction: index into user_values
    user_values: list[str]  # distinct user ids, first-seen order
    item_codes: np.ndarray  # int64, one per interaction: index into item_values
    item_values: list[str]  # distinct item ids (of interactions), first-seen order
    weights: np.ndarray  # float32
    timestamps: np.ndarray  # int64 unix seconds (synthetic row order if has_timestamps is False)
    items: Items
    has_timestamps: bool = True
    fingerprint: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_ids(cls, name: str, user_ids, item_ids, weights, timestamps, items: Items,
                 **kwargs) -> Dataset:
        u_codes, u_values = encode_ids(user_ids)
        i_codes, i_values = encode_ids(item_ids)
        return cls(name, u_codes, u_values, i_codes, i_values,
                   np.asarray(weights, dtype=np.float32),
                   np.asarray(timestamps, dtype=np.int64), items, **kwargs)

    @property
    def user_ids(self) -> np.ndarray:
        """One str per interaction, materialised: for small data and tests."""
        return _materialise(self.user_values, self.user_codes)

    @property
    def item_ids(self) -> np.ndarray:
        return _materialise(self.item_values, self.item_codes)

    def __len__(self) -> int:
        return len(self.user_codes)


def _materialise(values: list[str], codes: np.ndarray) -> np.ndarray:
    if not values:
        return np.zeros(len(codes), dtype="<U1")
    return np.asarray(values, dtype=np.str_)[codes]


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
                          "users": len(ds.user_values), "items": len(ds.items)}},
    )
    return ds


def _complete_items(items: Items, interaction_items: list[str]) -> Items:
    """Add catalog rows for interacted items the item file does not describe."""
    known = set(items.item_ids)
    for item in interaction_items:
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
    """Interactions through pyarrow's CSV reader: multithreaded C, and ids come back
    dictionary-encoded, so 20M rows load in seconds without a Python object per row."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    file = path / "interactions.csv"
    with open(file, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), [])
    cols = set(header)
    if not {"user_id", "item_id"} <= cols:
        raise DatasetError(f"{file}: header needs user_id,item_id")
    has_w, has_t = "weight" in cols, "timestamp" in cols
    wanted = ["user_id", "item_id"] + (["weight"] if has_w else []) + (
        ["timestamp"] if has_t else [])
    types = {"user_id": pa.large_string(), "item_id": pa.large_string(),
             "weight": pa.float32(), "timestamp": pa.float64()}
    try:
        table = pacsv.read_csv(file, convert_options=pacsv.ConvertOptions(
            column_types={c: types[c] for c in wanted}, include_columns=wanted,
            strings_can_be_null=False))
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise DatasetError(f"{file}: {exc}") from exc
    n = table.num_rows
    if n == 0:
        raise DatasetError(f"{path.name}: no interactions")

    def ids(name: str) -> tuple[np.ndarray, list[str]]:
        encoded = pc.dictionary_encode(table.column(name).combine_chunks())
        return (encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64),
                encoded.dictionary.to_pylist())

    u_codes, u_values = ids("user_id")
    i_codes, i_values = ids("item_id")
    weights = (table.column("weight").fill_null(1.0).to_numpy().astype(np.float32)
               if has_w else np.ones(n, np.float32))
    rows = np.arange(n, dtype=np.int64)
    if has_t:
        raw = table.column("timestamp").to_numpy(zero_copy_only=False)  # NaN where empty
        stamps = np.where(np.isnan(raw), rows, np.trunc(np.nan_to_num(raw))).astype(np.int64)
    else:
        stamps = rows
    catalog = Items([], [], [], [])
    files = [file]
    if (path / "items.csv").is_file():
        files.append(path / "items.csv")
        with open(path / "items.csv", newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                cats = row.get("categories") or ""
                catalog.item_ids.append(row["item_id"])
                catalog.titles.append(row.get("title") or row["item_id"])
                catalog.categories.append([c for c in cats.split("|") if c])
                catalog.texts.append(row.get("text") or "")
    return Dataset(path.name, u_codes, u_values, i_codes, i_values, weights, stamps,
                   _complete_items(catalog, i_values), has_t, _fingerprint(files))


def _build(name, users, items, weights, stamps, catalog, has_ts, files) -> Dataset:
    if not users:
        raise DatasetError(f"{name}: no interactions")
    ds = Dataset.from_ids(name, users, items, weights, stamps, catalog, has_timestamps=has_ts,
                          fingerprint=_fingerprint(files))
    ds.items = _complete_items(catalog, ds.item_values)
    return ds
