"""Dataset loaders: MovieLens latest-small (bundled), MovieLens 100K, and the generic format.

Generic format (a directory):
  interactions.csv  header ``user_id,item_id[,weight][,timestamp][,event]``; weight defaults
                    to 1, timestamp (unix seconds; milliseconds, microseconds and nanoseconds
                    are recognised by size and converted) may be absent: then the data has no time
                    (row order is read as time only with ``row_order_time``, an explicit
                    opt-in). ``event`` names the event's type (view, click, like, purchase,
                    rating, dislike, skip or any other name: ``common.events``), compared
                    case-insensitively without surrounding blanks; an empty cell names none.
                    Without the column the data is untyped, exactly as before types existed.
  items.csv         optional, header ``item_id,title,categories[,text]``; categories are
                    ``|``-separated.
  users.csv         optional, header ``user_id`` then one column per user attribute (age,
                    gender, country...): what cold start knows of a user before any event.
  social.csv        optional, header ``user_id,friend_id[,weight]``: who each user follows or
                    is friends with, and how strongly (default 1).
Every loader returns the same ``Dataset`` so nothing downstream knows where data came from.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shortlist.common.events import UnknownEventType, check_name
from shortlist.common.vocab import Vocabulary

logger = logging.getLogger(__name__)

BUNDLED = Path(__file__).resolve().parent.parent / "data"
SHARED = BUNDLED.parent.parent / "shared" / "datasets"
DATA_DIR_ENV = "SHORTLIST_DATA_DIR"
DATASET_NAMES = ("ml-latest-small", "ml-100k")

# The --help epilog of every command that takes --dataset (shortlist-train adds it).
DATASET_HELP = f"""\
datasets:
  --dataset takes a directory, or one of the names {', '.join(DATASET_NAMES)}.
  A name is looked up as NAME/ under, in order: each directory in ${DATA_DIR_ENV}
  (colon-separated), the bundled data directory ({BUNDLED}) and the shared
  datasets directory ({SHARED}).
  A directory holds ratings.csv and movies.csv (MovieLens latest), u.data (MovieLens 100K),
  or interactions.csv with an optional items.csv (the generic format; see the README)."""

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
class Users:
    """User attributes as the data gives them: one row of strings per user id."""

    user_ids: list[str]
    columns: list[str]
    rows: list[list[str]]


@dataclass
class Social:
    """Ties between users as the data gives them: ``user_id`` follows ``friend_id``."""

    user_ids: list[str]
    friend_ids: list[str]
    weights: list[float]


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
    timestamps: np.ndarray  # int64 unix seconds (all 0 when has_timestamps is False)
    items: Items
    has_timestamps: bool = True
    fingerprint: str = ""
    extra: dict = field(default_factory=dict)
    users: Users | None = None  # attributes, when the data has them
    social: Social | None = None  # ties between users, when the data has them
    # Event type per interaction (an ``event`` column), as codes into ``event_names``
    # (normalised by ``common.events.normalise``; "" for a row naming none). None: untyped.
    event_codes: np.ndarray | None = None  # int16
    event_names: list[str] = field(default_factory=list)

    def profile_user_ids(self) -> list[str]:
        """Users the data describes besides those with events (attributes, ties)."""
        ids: list[str] = []
        if self.users is not None:
            ids += self.users.user_ids
        if self.social is not None:
            ids += self.social.user_ids + self.social.friend_ids
        return ids

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


def data_roots() -> list[tuple[Path, str]]:
    """Where a dataset name is looked up, in order, each with where that place comes from."""
    roots = [(Path(p).expanduser(), f"${DATA_DIR_ENV}")
             for p in os.environ.get(DATA_DIR_ENV, "").split(":") if p]
    return [*roots, (BUNDLED, "bundled"), (SHARED, "shared")]


def resolve_path(spec: str) -> Path:
    """A dataset directory from a path or a known name ($SHORTLIST_DATA_DIR, bundled, shared).

    A spec that looks like a path is only ever a path, so a typo in it is reported as a
    missing directory rather than as an unknown dataset name.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    known = ", ".join(DATASET_NAMES)
    if path.exists():
        raise DatasetError(f"{path.absolute()} is not a directory (a dataset is a directory of "
                           "data files: see shortlist-train fit --help)")
    if "/" in spec or os.sep in spec or spec.startswith((".", "~")):
        raise DatasetError(f"no such directory {path.absolute()} (--dataset takes a directory, "
                           f"or one of the names {known})")
    roots = data_roots()
    unset = "" if os.environ.get(DATA_DIR_ENV) else f"${DATA_DIR_ENV} (not set), "
    if spec in DATASET_NAMES:
        for root, _ in roots:
            if (root / spec).is_dir():
                return root / spec
        searched = ", ".join(f"{root / spec} ({origin})" for root, origin in roots)
        raise DatasetError(f"dataset {spec!r} not found; looked for {unset}{searched}. Put it "
                           f"in one of those, or point ${DATA_DIR_ENV} at a directory "
                           f"holding {spec}/")
    places = ", ".join(f"{root} ({origin})" for root, origin in roots)
    raise DatasetError(f"no dataset {spec!r}: not a directory, and not a known name ({known}); "
                       f"known names are looked up in {unset}{places}")


# ---- CSV errors: where, in editor terms ---------------------------------------------------
# Found only once a parse failed, so loading a good file costs nothing extra.

NUMBER = "a number"
# What each numeric column must hold, for messages.
EXPECTED = {"weight": NUMBER, "rating": NUMBER, "timestamp": "unix seconds (a number)"}


def cell_error(file: Path, line: int, header: Sequence[str], index: int, value: str | None,
               problem: str = "") -> DatasetError:
    """An error naming the file, the 1-based line (the header is line 1, as in an editor),
    the column by 1-based index and name, and the bad value."""
    name = header[index] if index < len(header) else "beyond the header"
    where = f"{file}, line {line}, column {index + 1} ({name})"
    if value is None:
        return DatasetError(f"{where} is missing: the row has only {index} of "
                            f"{len(header)} fields")
    return DatasetError(f"{where}: {value!r} is not {problem or EXPECTED.get(name, NUMBER)}")


def _require_columns(file: Path, header: Sequence[str] | None, needed: Sequence[str]) -> None:
    missing = [c for c in needed if c not in (header or ())]
    if missing:
        raise DatasetError(f"{file}, line 1 (the header): no column {', '.join(missing)}; it "
                           f"needs {','.join(needed)} and has {','.join(header or ()) or 'none'}")


def _records(file: Path):
    """(first line, fields) of every non-empty record after the header; the header is line 1.

    The header is skipped so that a header repeated further down (concatenated files) is
    found at its own line when its text is the bad value.
    """
    with open(file, newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        start = reader.line_num + 1
        for fields in reader:
            if fields:
                yield start, fields
            start = reader.line_num + 1


def _bad_row(file: Path, line: int, header: Sequence[str], row: dict,
             converters: dict[str, Callable[[str], object]]) -> DatasetError:
    """The error for a DictReader row one of whose ``converters`` failed."""
    for name, convert in converters.items():
        value = row.get(name)
        index = list(header).index(name)
        if value is None:
            return cell_error(file, line, header, index, None)
        try:
            convert(value)
        except ValueError:
            return cell_error(file, line, header, index, value,
                              "an integer" if convert is int else "")
    return DatasetError(f"{file}, line {line}: cannot read {row}")


_CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to \w+: "
                         r"(?:invalid value '(.*)'|(invalid UTF8 data))$", re.DOTALL)
_FIELD_COUNT = re.compile(r"CSV parse error: Expected (\d+) columns, got (\d+)")


def locate_arrow_error(file: Path, header: Sequence[str], message: str) -> DatasetError:
    """pyarrow's CSV error as file, line, column and value.

    pyarrow names the column (0-based) and the value but not the row, and reads blocks in
    parallel, so the line is found by scanning the file for the first record that fails the
    same way.
    """
    if m := _CONVERSION.search(message):
        index, value, utf8 = int(m.group(1)), m.group(2), m.group(3)
        for line, fields in _records(file):
            cell = fields[index] if index < len(fields) else None
            if cell is None:
                continue
            if utf8 and any("\udc80" <= ch <= "\udcff" for ch in cell):
                raw = cell.encode("utf-8", "surrogateescape")
                return cell_error(file, line, header, index, raw.decode("utf-8", "replace"),
                                  "valid UTF-8")
            if not utf8 and cell == value:
                return cell_error(file, line, header, index, value)
    elif m := _FIELD_COUNT.search(message):
        for line, fields in _records(file):
            if len(fields) < len(header):
                return cell_error(file, line, header, len(fields), None)
            if len(fields) > len(header):
                return DatasetError(f"{file}, line {line}: {len(fields)} fields where the "
                                    f"header has {len(header)} (column {len(header) + 1} "
                                    "and on are extra: an unquoted comma?)")
    return DatasetError(f"{file}: {message}")


# A dataset spec may end in a variant: "ml-100k~untimed" is ml-100k with its timestamps
# removed and its rows shuffled (weights kept), the shape of data that has no time.
VARIANT_SEP = "~"
VARIANTS = ("untimed",)


def load(spec: str, row_order_time: bool = False) -> Dataset:
    """Load by name or directory, detecting the format from the files present.

    Without a timestamp column nothing is assumed about time: every event gets timestamp 0
    and ``has_timestamps`` is False. ``row_order_time`` opts in to reading a generic file's
    row order as time (for logs written in time order but without a clock).
    """
    base, _, variant = spec.partition(VARIANT_SEP)
    if variant and variant not in VARIANTS:
        raise DatasetError(f"unknown dataset variant {variant!r} in {spec!r} (known: "
                           f"{', '.join(VARIANTS)})")
    path = resolve_path(base)
    if (path / "ratings.csv").is_file() and (path / "movies.csv").is_file():
        ds = load_movielens_latest(path)
    elif (path / "u.data").is_file():
        ds = load_movielens_100k(path)
    elif (path / "interactions.csv").is_file():
        ds = load_generic(path, row_order_time)
    else:
        raise DatasetError(
            f"{path}: no ratings.csv+movies.csv, u.data or interactions.csv found"
        )
    if variant == "untimed":
        ds = untimed(ds)
    logger.info(
        "dataset loaded",
        extra={"fields": {"dataset": ds.name, "interactions": len(ds),
                          "users": len(ds.user_values), "items": len(ds.items)}},
    )
    return ds


def load_profiles(spec: str) -> tuple[Users | None, Social | None]:
    """Only what a dataset says about users (``u.user`` or ``users.csv``, ``social.csv``; None
    without): the Spark engine reads the interactions itself but these on the driver."""
    path = resolve_path(spec.partition(VARIANT_SEP)[0])
    users = social = None
    if (path / "u.data").is_file() and (path / "u.user").is_file():
        users = read_ml100k_users(path / "u.user")
    if (path / "interactions.csv").is_file():
        if (path / "users.csv").is_file():
            users = read_generic_users(path / "users.csv")
        if (path / "social.csv").is_file():
            social = read_generic_social(path / "social.csv")
    return users, social


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


def _dict_reader(fh, file: Path, needed: Sequence[str]) -> csv.DictReader:
    reader = csv.DictReader(fh)
    _require_columns(file, reader.fieldnames, needed)
    return reader


def load_movielens_latest(path: Path) -> Dataset:
    users, items, weights, stamps = [], [], [], []
    file = path / "ratings.csv"
    try:
        with open(file, newline="", encoding="utf-8") as fh:
            reader = _dict_reader(fh, file, ("userId", "movieId", "rating", "timestamp"))
            try:
                for row in reader:
                    users.append(row["userId"])
                    items.append(row["movieId"])
                    weights.append(float(row["rating"]))
                    stamps.append(int(row["timestamp"]))
            except (ValueError, TypeError) as exc:
                raise _bad_row(file, reader.line_num, reader.fieldnames, row,
                               {"rating": float, "timestamp": int}) from exc
        tags: dict[str, list[str]] = {}
        if (path / "tags.csv").is_file():
            file = path / "tags.csv"
            with open(file, newline="", encoding="utf-8") as fh:
                for row in _dict_reader(fh, file, ("movieId", "tag")):
                    tags.setdefault(row["movieId"], []).append(row["tag"])
        catalog = Items([], [], [], [])
        file = path / "movies.csv"
        with open(file, newline="", encoding="utf-8") as fh:
            for row in _dict_reader(fh, file, ("movieId", "title", "genres")):
                genres = row["genres"] or ""
                genres = [] if genres == "(no genres listed)" else genres.split("|")
                catalog.item_ids.append(row["movieId"])
                catalog.titles.append(row["title"] or "")
                catalog.categories.append(genres)
                catalog.texts.append(" ".join(tags.get(row["movieId"], [])))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    files = [p for p in (path / "ratings.csv", path / "movies.csv", path / "tags.csv")
             if p.is_file()]
    return _build(path.name, users, items, weights, stamps, catalog, True, files)


def load_movielens_100k(path: Path) -> Dataset:
    users, items, weights, stamps = [], [], [], []
    file = path / "u.data"
    with open(file, encoding="latin-1") as fh:
        for number, line in enumerate(fh, 1):
            parts = line.split("\t")
            if not parts[0].strip().isdigit():
                continue  # a header or a blank line
            try:
                users.append(parts[0].strip())
                items.append(parts[1].strip())
                weights.append(float(parts[2]))
                stamps.append(int(parts[3]))
            except (ValueError, IndexError) as exc:
                raise _bad_ml100k_line(file, number, parts) from exc
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
    ds = _build(path.name, users, items, weights, stamps, catalog, True, files)
    if (path / "u.user").is_file():
        ds.users = read_ml100k_users(path / "u.user")
        ds.fingerprint = _fingerprint([*files, path / "u.user"])
    return ds


def read_ml100k_users(file: Path) -> Users:
    """``u.user`` (id|age|gender|occupation|zip code). The zip code is left out: five digits
    are nearly one value per user, nothing a segment can be learned from."""
    users = Users([], ["age", "gender", "occupation"], [])
    with open(file, encoding="latin-1") as fh:
        for number, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split("|")
            if not parts[0].strip().isdigit():
                continue  # a header or a blank line
            if len(parts) < 4:
                raise DatasetError(f"{file}, line {number}: expected id|age|gender|occupation|"
                                   f"zip, got {len(parts)} fields")
            users.user_ids.append(parts[0].strip())
            users.rows.append([p.strip() for p in parts[1:4]])
    return users


ML100K_COLUMNS = ("user id", "item id", "rating", "timestamp")


def _bad_ml100k_line(file: Path, number: int, parts: list[str]) -> DatasetError:
    if len(parts) < len(ML100K_COLUMNS):
        return cell_error(file, number, ML100K_COLUMNS, len(parts), None)
    for index, convert in ((2, float), (3, int)):
        try:
            convert(parts[index])
        except ValueError:
            return cell_error(file, number, ML100K_COLUMNS, index, parts[index].strip(),
                              "an integer" if convert is int else "")
    return DatasetError(f"{file}, line {number}: cannot read {parts}")


def untimed(ds: Dataset, seed: int = 42) -> Dataset:
    """The same interactions with timestamps removed and rows shuffled (seeded)."""
    order = np.random.default_rng(seed).permutation(len(ds))
    return dataclasses.replace(
        ds, name=f"{ds.name}{VARIANT_SEP}untimed", user_codes=ds.user_codes[order],
        item_codes=ds.item_codes[order], weights=ds.weights[order],
        event_codes=None if ds.event_codes is None else ds.event_codes[order],
        event_names=list(ds.event_names),
        timestamps=np.zeros(len(ds), np.int64), has_timestamps=False,
        fingerprint=hashlib.sha256(f"{ds.fingerprint}:untimed:{seed}".encode()).hexdigest())


# Unix seconds reach 1e11 in the year 5138: a larger timestamp is in milliseconds (1.7e12
# today), microseconds or nanoseconds, as event logs often write them.
SECONDS_LIMIT = 10**11


def seconds_unit(top: int) -> int:
    """What timestamps whose largest magnitude is ``top`` are divided by to be unix seconds:
    1, 10**3, 10**6 or 10**9 (one rule for every engine that loads data)."""
    unit = 1
    while top // unit >= SECONDS_LIMIT and unit < 10**9:
        unit *= 1000
    return unit


def to_seconds(stamps: np.ndarray) -> tuple[np.ndarray, int]:
    """(unix seconds, the divisor applied: ``seconds_unit``).

    Everything downstream counts time in seconds (popularity windows, decays in days), so
    milliseconds read as seconds would make a 30-day window 43 minutes long."""
    unit = seconds_unit(int(np.abs(stamps).max()) if len(stamps) else 0)
    return (stamps // unit if unit > 1 else stamps), unit


def load_generic(path: Path, row_order_time: bool = False) -> Dataset:
    """Interactions through pyarrow's CSV reader: multithreaded C, and ids come back
    dictionary-encoded, so 20M rows load in seconds without a Python object per row."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    file = path / "interactions.csv"
    with open(file, "rb") as fh:  # one line: a text reader would decode (and fail) further
        first = fh.readline()
    try:
        header = next(csv.reader([first.decode("utf-8-sig")]), [])  # a BOM, as pyarrow skips
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{file}, line 1 (the header): not UTF-8 text") from exc
    cols = set(header)
    _require_columns(file, header, ("user_id", "item_id"))
    has_w, has_t, has_e = "weight" in cols, "timestamp" in cols, "event" in cols
    wanted = ["user_id", "item_id"] + (["weight"] if has_w else []) + (
        ["timestamp"] if has_t else []) + (["event"] if has_e else [])
    types = {"user_id": pa.large_string(), "item_id": pa.large_string(),
             "weight": pa.float32(), "timestamp": pa.float64(), "event": pa.large_string()}
    try:
        table = pacsv.read_csv(file, convert_options=pacsv.ConvertOptions(
            column_types={c: types[c] for c in wanted}, include_columns=wanted,
            strings_can_be_null=False))
    except pa.ArrowInvalid as exc:
        raise locate_arrow_error(file, header, str(exc)) from exc
    n = table.num_rows
    if n == 0:
        raise DatasetError(f"{path.name}: no interactions")

    def ids(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
        encoded = pc.dictionary_encode(column.combine_chunks())
        return (encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64),
                encoded.dictionary.to_pylist())

    u_codes, u_values = ids(table.column("user_id"))
    i_codes, i_values = ids(table.column("item_id"))
    weights = (table.column("weight").fill_null(1.0).to_numpy().astype(np.float32)
               if has_w else np.ones(n, np.float32))
    rows = np.arange(n, dtype=np.int64)
    if has_t:
        raw = table.column("timestamp").to_numpy(zero_copy_only=False)  # NaN where empty
        stamps = np.where(np.isnan(raw), rows, np.trunc(np.nan_to_num(raw))).astype(np.int64)
        stamps, unit = to_seconds(stamps)
        if unit > 1:
            logger.warning("timestamps read as 1/%d seconds (the largest is past the year "
                           "5000 in seconds) and converted to unix seconds", unit,
                           extra={"fields": {"file": str(file), "unit": unit}})
    elif row_order_time:  # the documented opt-in: row order is time
        stamps, has_t = rows, True
    else:
        stamps = np.zeros(n, np.int64)
    event_codes, event_names = None, []
    if has_e:
        event_codes, event_names = _event_types(file, header, *ids(table.column("event")))
    # Every column is numpy now. Arrow's allocator (mimalloc) keeps the table's freed pages
    # for reuse that never comes: 1.3 GB at 20M rows, resident through the whole fit.
    del table
    pa.default_memory_pool().release_unused()
    catalog, files = read_generic_items(path)
    users = read_generic_users(path / "users.csv") if (path / "users.csv").is_file() else None
    if users is not None:
        files.append(path / "users.csv")
    social = (read_generic_social(path / "social.csv") if (path / "social.csv").is_file()
              else None)
    if social is not None:
        files.append(path / "social.csv")
    return Dataset(path.name, u_codes, u_values, i_codes, i_values, weights, stamps,
                   _complete_items(catalog, i_values), has_t, _fingerprint(files), users=users,
                   social=social, event_codes=event_codes, event_names=event_names)


def _event_types(file: Path, header: Sequence[str], codes: np.ndarray,
                 raw: list[str]) -> tuple[np.ndarray, list[str]]:
    """(int16 code per row, normalised names) from the event column's dictionary encoding.

    Names are checked once per distinct cell value, not per row; " Purchase" and "purchase"
    are one type. A malformed one is only located in the file (by a scan) once found bad.
    """
    names: list[str] = []
    index: dict[str, int] = {}
    remap = np.empty(len(raw), np.int64)
    for j, value in enumerate(raw):
        try:
            name = check_name(value)
        except UnknownEventType:
            raise _bad_event(file, header, value) from None
        if name not in index:
            index[name] = len(names)
            names.append(name)
        remap[j] = index[name]
    if len(names) > np.iinfo(np.int16).max:
        raise DatasetError(f"{file}: {len(names)} distinct event types; at most "
                           f"{np.iinfo(np.int16).max} are supported")
    return remap[codes].astype(np.int16), names


EVENT_NAME = ("an event type (1-32 characters of a-z, 0-9, '_', '.' or '-', starting with a "
              "letter or digit; case and surrounding blanks are ignored)")


def _bad_event(file: Path, header: Sequence[str], value: str) -> DatasetError:
    column = list(header).index("event")
    for line, fields in _records(file):
        if column < len(fields) and fields[column] == value:
            return cell_error(file, line, header, column, value, EVENT_NAME)
    return DatasetError(f"{file}, column {column + 1} (event): {value!r} is not {EVENT_NAME}")


def read_generic_social(file: Path) -> Social:
    """``social.csv``: ``user_id,friend_id[,weight]``; a tie to oneself is an error, a weight
    must be a positive number."""
    social = Social([], [], [])
    try:
        with open(file, newline="", encoding="utf-8") as fh:
            reader = _dict_reader(fh, file, ("user_id", "friend_id"))
            header = reader.fieldnames or []
            for row in reader:
                line = reader.line_num
                uid, fid = (row.get("user_id") or "").strip(), (row.get("friend_id") or "").strip()
                if not uid or not fid:
                    raise DatasetError(f"{file}, line {line}: empty user_id or friend_id")
                if uid == fid:
                    raise DatasetError(f"{file}, line {line}: {uid[:64]!r} is tied to itself")
                raw = (row.get("weight") or "").strip()
                try:
                    weight = float(raw) if raw else 1.0
                except ValueError:
                    weight = float("nan")
                if not weight > 0 or weight == float("inf"):
                    raise cell_error(file, line, header, header.index("weight"), raw,
                                     "a positive number")
                social.user_ids.append(uid)
                social.friend_ids.append(fid)
                social.weights.append(weight)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                           ) from exc
    return social


def read_generic_users(file: Path) -> Users:
    """``users.csv``: ``user_id`` and at least one attribute column; empty cells are unknown.
    A user listed twice is an error (which row would be true?)."""
    try:
        with open(file, newline="", encoding="utf-8") as fh:
            reader = _dict_reader(fh, file, ("user_id",))
            columns = [c for c in reader.fieldnames or [] if c != "user_id"]
            if not columns:
                raise DatasetError(f"{file}: no attribute column besides user_id")
            users = Users([], columns, [])
            seen: set[str] = set()
            for row in reader:
                uid = (row.get("user_id") or "").strip()
                if not uid:
                    raise DatasetError(f"{file}, line {reader.line_num}: empty user_id")
                if uid in seen:
                    raise DatasetError(f"{file}, line {reader.line_num}: user_id {uid[:64]!r} "
                                       "is listed twice")
                seen.add(uid)
                users.user_ids.append(uid)
                users.rows.append([(row.get(c) or "").strip() for c in columns])
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                           ) from exc
    return users


def read_generic_items(path: Path) -> tuple[Items, list[Path]]:
    """A generic-format directory's ``items.csv`` (empty without one) and the files that make
    up the dataset (for its fingerprint)."""
    catalog = Items([], [], [], [])
    files = [path / "interactions.csv"]
    items_file = path / "items.csv"
    if items_file.is_file():
        files.append(items_file)
        try:
            with open(items_file, newline="", encoding="utf-8") as fh:
                for row in _dict_reader(fh, items_file, ("item_id",)):
                    cats = row.get("categories") or ""
                    catalog.item_ids.append(row["item_id"])
                    catalog.titles.append(row.get("title") or row["item_id"])
                    catalog.categories.append([c for c in cats.split("|") if c])
                    catalog.texts.append(row.get("text") or "")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{items_file}: not UTF-8 text ({exc.reason} at byte "
                               f"{exc.start})") from exc
    return catalog, files


def fingerprint(paths: list[Path]) -> str:
    """The dataset fingerprint of these files (as every loader computes it)."""
    return _fingerprint(paths)


def _build(name, users, items, weights, stamps, catalog, has_ts, files) -> Dataset:
    if not users:
        raise DatasetError(f"{name}: no interactions")
    ds = Dataset.from_ids(name, users, items, weights, stamps, catalog, has_timestamps=has_ts,
                          fingerprint=_fingerprint(files))
    ds.items = _complete_items(catalog, ds.item_values)
    return ds
