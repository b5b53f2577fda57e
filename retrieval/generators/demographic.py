"""Demographic: what is popular among users like this one (same age band, gender, country...).

A new user with attributes but no history gets more than trending: each attribute value
(``occupation=student``, an age band) has its own item popularity, and the values a user has
are combined naive-Bayes style,

    score(i) = log p(i) + sum over attributes a of [log p(i | a = v_a) - log p(i)],

with p(i | a = v) smoothed toward p(i) by ``smoothing`` pseudo-events, so a value seen on few
users says little and an attribute the user lacks says nothing. Numeric attributes are cut at
quantiles of the users' values into ``buckets`` bands; rare categories are unknown. How each
column was read is saved with the model, so a request's ``user_attributes`` are read exactly as
training read ``users.csv``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shortlist.common.artifacts import read_json, write_json
from shortlist.common.catalog import ItemCatalog
from shortlist.retrieval.generators.base import (
    FitData,
    Generator,
    GeneratorSkipped,
    HnswParams,
    UserState,
)
from shortlist.retrieval.hnsw import exact_top_k
from shortlist.retrieval.trending import decay


@dataclass
class DemographicConfig:
    candidates: int = 50
    light_factor: float = 1.0
    # Pseudo-events pulling each attribute value's popularity toward the global one.
    smoothing: float = 100.0
    # Events lose half their weight every this many days before the latest (what is popular
    # now, as trending); 0: no decay.
    half_life_days: float = 0.0
    # Numeric attributes (age) are cut into this many quantile bands.
    buckets: int = 5
    # A category value held by fewer users is unknown (nothing to learn from).
    min_users: int = 5


def read_column(values: np.ndarray, buckets: int, min_users: int) -> dict[str, Any]:
    """How to read one attribute column: numbers cut at quantiles, or a list of categories."""
    known = values[values != ""]
    numbers = _floats(known)
    if len(known) and numbers is not None and len(np.unique(numbers)) > 2 * buckets:
        edges = np.unique(np.quantile(numbers, np.linspace(0, 1, buckets + 1)[1:-1]))
        return {"kind": "number", "edges": edges.tolist()}
    names, counts = np.unique(known, return_counts=True)
    return {"kind": "category", "values": names[counts >= min_users].tolist()}


def _floats(values: np.ndarray) -> np.ndarray | None:
    try:
        return values.astype(np.float64)
    except ValueError:
        return None


class ColumnReader:
    """One column's values to codes 0..size-1 (-1: unknown)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = dict(spec)
        if spec["kind"] == "number":
            self.edges = np.asarray(spec["edges"], np.float64)
            self.size = len(self.edges) + 1
        else:
            self.index = {v: i for i, v in enumerate(spec["values"])}
            self.size = len(self.index)

    def code(self, value: str) -> int:
        value = value.strip()
        if not value:
            return -1
        if self.spec["kind"] == "number":
            try:
                x = float(value)
            except ValueError:
                return -1
            return int(np.searchsorted(self.edges, x, side="right")) if np.isfinite(x) else -1
        return self.index.get(value, -1)


class DemographicGenerator(Generator):
    """Items popular among users with the same attributes; serves new users who give them."""

    name = "demographic"
    Config = DemographicConfig
    serves_new_users = True
    untimed = {"half_life_days": 0.0}

    def __init__(self, columns: tuple[str, ...], specs: list[dict[str, Any]],
                 lift: np.ndarray, log_p: np.ndarray, stored: np.ndarray,
                 config: DemographicConfig) -> None:
        self.columns = columns
        self.readers = [ColumnReader(s) for s in specs]
        self.offsets = np.concatenate([[0], np.cumsum([r.size for r in self.readers])])
        self.lift = lift  # (sum of column sizes, items) float32
        self.log_p = log_p  # (items,) float32
        self.stored = stored  # (users, columns) str: what training knew of each user
        self.config = config

    @classmethod
    def fit(cls, data: FitData, config: DemographicConfig,
            previous: Generator | None = None) -> DemographicGenerator:
        attrs = data.attributes
        if attrs is None or not attrs.columns:
            raise GeneratorSkipped("the data has no user attributes (add a users.csv)")
        ev = data.events
        n_items = len(data.catalog)
        users, items = np.asarray(ev.users, np.int64), np.asarray(ev.items, np.int64)
        weight = decay((data.now - np.asarray(ev.timestamps, np.int64)).astype(np.float64),
                       config.half_life_days)
        item_w = np.bincount(items, weights=weight, minlength=n_items)
        log_p = np.log((item_w + 1.0) / (item_w.sum() + n_items))
        # Columns are read from the users with events (whom the data describes).
        active = np.zeros(len(attrs), bool)
        active[users[users < len(attrs)]] = True
        specs = [read_column(attrs.values[active, c], config.buckets, config.min_users)
                 for c in range(len(attrs.columns))]
        blocks = []
        for c, spec in enumerate(specs):
            reader = ColumnReader(spec)
            codes = np.array([reader.code(v) for v in attrs.values[:, c].tolist()], np.int64)
            code = np.where(users < len(codes), codes[np.minimum(users, len(codes) - 1)], -1)
            known = code >= 0
            counts = np.bincount(code[known] * n_items + items[known], weights=weight[known],
                                 minlength=reader.size * n_items).reshape(reader.size, n_items)
            q = ((counts + config.smoothing * np.exp(log_p))
                 / (counts.sum(axis=1, keepdims=True) + config.smoothing))
            blocks.append((np.log(q) - log_p).astype(np.float32))
        if not any(b.size for b in blocks):
            raise GeneratorSkipped("no user attribute value is held by enough users")
        lift = np.vstack(blocks) if blocks else np.zeros((0, n_items), np.float32)
        return cls(attrs.columns, specs, lift, log_p.astype(np.float32),
                   attrs.values.astype(np.str_), config)

    @classmethod
    def tuning_grid(cls, config: DemographicConfig) -> list[dict[str, Any]]:
        # Not the half-life: tuning scores established users' next item, where recency
        # wins, while this generator is for new users, whose whole future counts; trending
        # already proposes what is popular now (docs/design.md).
        return [{"smoothing": s} for s in (10.0, 100.0, 1000.0, 10000.0)]

    def rows(self, user: UserState) -> np.ndarray:
        """The lift rows of the user's known attribute values (request over stored)."""
        stored = {}
        if 0 <= user.user < len(self.stored):
            stored = dict(zip(self.columns, self.stored[user.user].tolist(), strict=True))
        given = {**stored, **{k: v for k, v in user.attributes.items() if v}}
        out = []
        for c, (column, reader) in enumerate(zip(self.columns, self.readers, strict=True)):
            code = reader.code(given.get(column, ""))
            if code >= 0:
                out.append(self.offsets[c] + code)
        return np.asarray(out, np.int64)

    def scores(self, user: UserState) -> np.ndarray | None:
        if self.name not in user.memo:
            rows = self.rows(user)
            user.memo[self.name] = (self.log_p + self.lift[rows].sum(axis=0)
                                    if len(rows) else None)
        return user.memo[self.name]

    def propose(self, user: UserState, k: int,
                banned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.scores(user)
        if s is None:  # nothing known of the user: trending speaks for the crowd
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        s = s.astype(np.float64)
        s[banned[: len(s)]] = -np.inf
        top = exact_top_k(s, k)
        top = top[np.isfinite(s[top])]
        return top, s[top].astype(np.float32)

    def affinity(self, user: UserState, items: np.ndarray) -> np.ndarray | None:
        s = self.scores(user)
        return None if s is None else s[items].astype(np.float32)

    def add_item(self, idx: int, document: str) -> None:
        """A new item has no events: it stands where an item nobody took stands, overall
        (the least popular) and in every segment (each row's least lift)."""
        if idx >= len(self.log_p):
            extra = idx + 1 - len(self.log_p)
            floor = float(self.log_p.min()) if len(self.log_p) else 0.0
            self.log_p = np.concatenate([self.log_p, np.full(extra, floor, np.float32)])
            least = (self.lift.min(axis=1, keepdims=True) if self.lift.shape[1]
                     else np.zeros((len(self.lift), 1), np.float32))
            self.lift = np.hstack([self.lift, np.repeat(least, extra, axis=1)])

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        write_json(directory / "columns.json",
                   {"columns": list(self.columns), "readers": [r.spec for r in self.readers]})
        np.save(directory / "lift.npy", self.lift)
        np.save(directory / "log_p.npy", self.log_p)
        np.save(directory / "users.npy", self.stored)

    @classmethod
    def load(cls, directory: Path, config: DemographicConfig, catalog: ItemCatalog,
             hnsw: HnswParams) -> DemographicGenerator:
        meta = read_json(directory / "columns.json")
        return cls(tuple(meta["columns"]), meta["readers"],
                   np.load(directory / "lift.npy", allow_pickle=False),
                   np.load(directory / "log_p.npy", allow_pickle=False),
                   np.load(directory / "users.npy", allow_pickle=False), config)

