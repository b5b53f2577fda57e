"""Drift: how far what a server serves has moved from what its version served when it was fit.

Training stores, with each server's part of a version, the reference distribution of every
signal that server observes (``drift_reference.json``); the server counts the same signals over
a sliding window of its latest requests and reports the population stability index of each
against its reference. The binning lives here, once, because a reference binned one way and
traffic binned another would drift by construction. No grpc and no prometheus here: the servers
export what ``Monitor.readings`` returns (``common.metrics``), training writes ``Reference``.

PSI = sum over bins of (a - e) * ln(a / e), with a and e the observed and reference shares,
each floored at ``EPSILON`` so an empty bin counts as rare rather than impossible. Customary
reading (docs/operations.md): below ``WATCH`` stable, up to ``RETRAIN`` moderate, above it
significant.
"""

from __future__ import annotations

import json
import threading
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shortlist.common.artifacts import ArtifactError
from shortlist.common.candidates import (
    SEGMENT_ESTABLISHED,
    SEGMENT_LIGHT,
    SEGMENT_NEW,
    SEGMENT_ONBOARDING,
    Candidates,
)

FILE = "drift_reference.json"
SCHEMA_VERSION = 1
# Floor of a bin's share: ln(a / e) is finite, and a bin empty on one side weighs as a share
# of 1e-4 would (the value most PSI write-ups use).
EPSILON = 1e-4
WATCH = 0.1
RETRAIN = 0.25

# The signals, by the server that observes them.
SCORE = "score"  # ranking: scores of the items it returns
POPULARITY = "popularity"  # ranking: popularity tier of the items it returns
SOURCES = "sources"  # retrieval: which generator proposed each candidate slot
SEGMENT = "segment"  # retrieval: the user's segment, one per request
SEGMENTS = (SEGMENT_NEW, SEGMENT_ONBOARDING, SEGMENT_LIGHT, SEGMENT_ESTABLISHED)
# Requests a server's window holds by default (its drift_window setting).
DEFAULT_WINDOW = 10_000


def shares(counts: Sequence[float] | np.ndarray) -> np.ndarray:
    """Counts as shares summing to 1 (all zeros when there are none)."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    return c / total if total > 0 else np.zeros_like(c)


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray,
        epsilon: float = EPSILON) -> float:
    """Population stability index of ``actual`` against ``expected`` (counts or shares, each
    normalised here); 0 for identical distributions, symmetric in the two."""
    e, a = shares(expected), shares(actual)
    if e.shape != a.shape:
        raise ValueError(f"{len(e)} reference bins against {len(a)} observed")
    e, a = np.maximum(e, epsilon), np.maximum(a, epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def verdict(value: float) -> str:
    """The reading of a PSI: "stable", "watch" or "retrain" (docs/operations.md)."""
    if value > RETRAIN:
        return "retrain"
    return "watch" if value >= WATCH else "stable"


@dataclass
class Distribution:
    """One signal's reference: the share of each bin, and how a value finds its bin.

    Categorical signals name their bins (``labels``); numeric ones cut the line at ``edges``
    (ascending), a value's bin being the number of edges at or below it, so ``len(edges) + 1``
    bins. ``observations``: how many made the reference; ``definition``: what is counted.
    """

    proportions: tuple[float, ...]
    labels: tuple[str, ...] = ()
    edges: tuple[float, ...] = ()
    observations: int = 0
    definition: str = ""
    _edges: np.ndarray = field(init=False, repr=False, compare=False)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.proportions = tuple(float(p) for p in self.proportions)
        self.labels, self.edges = tuple(self.labels), tuple(float(e) for e in self.edges)
        expected = len(self.labels) if self.labels else len(self.edges) + 1
        if self.labels and self.edges:
            raise ValueError("a distribution has labels or edges, not both")
        if len(self.proportions) != expected:
            raise ValueError(f"{len(self.proportions)} proportions for {expected} bins")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must be strictly ascending")
        self._edges = np.asarray(self.edges, dtype=np.float64)
        self._index = {label: i for i, label in enumerate(self.labels)}

    @property
    def bins(self) -> int:
        return len(self.proportions)

    def counts(self, values: np.ndarray) -> np.ndarray:
        """Values of a numeric signal counted into its bins."""
        where = np.searchsorted(self._edges, np.asarray(values, dtype=np.float64), "right")
        return np.bincount(where, minlength=self.bins)

    def count_few(self, values: Iterable[float]) -> list[int]:
        """``counts`` for one request's handful of values: bisect on a list costs a fraction
        of numpy's per-call overhead at this size, and bins exactly as ``counts`` does."""
        out = [0] * self.bins
        edges = self.edges
        for v in values:
            out[bisect_right(edges, v)] += 1
        return out

    def index(self, label: str) -> int | None:
        return self._index.get(label)

    @classmethod
    def numeric(cls, values: np.ndarray, edges: Iterable[float],
                definition: str = "") -> Distribution:
        values, edges = np.asarray(values, dtype=np.float64), tuple(edges)
        probe = cls((0.0,) * (len(edges) + 1), edges=edges)
        return cls(tuple(shares(probe.counts(values))), edges=probe.edges,
                   observations=len(values), definition=definition)

    @classmethod
    def quantiles(cls, values: np.ndarray, bins: int = 10,
                  definition: str = "") -> Distribution:
        """Bins cut at the values' own quantiles (deciles by default): equal shares, except
        where ties make two cuts one."""
        values = np.asarray(values, dtype=np.float64)
        cuts = (np.unique(np.quantile(values, np.arange(1, bins) / bins)) if len(values)
                else np.zeros(0))
        return cls.numeric(values, cuts.tolist(), definition)

    @classmethod
    def categorical(cls, labels: Sequence[str], counts: Sequence[float] | np.ndarray,
                    definition: str = "") -> Distribution:
        return cls(tuple(shares(counts)), labels=tuple(labels),
                   observations=int(round(float(np.sum(counts)))), definition=definition)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"proportions": list(self.proportions),
                               "observations": self.observations,
                               "definition": self.definition}
        if self.labels:
            out["labels"] = list(self.labels)
        else:
            out["edges"] = list(self.edges)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Distribution:
        return cls(tuple(data["proportions"]), tuple(data.get("labels", ())),
                   tuple(data.get("edges", ())), int(data.get("observations", 0)),
                   str(data.get("definition", "")))


@dataclass
class Reference:
    """The signals one server observes, as its version served them at fit time."""

    signals: dict[str, Distribution]
    # How the reference was drawn (users sampled, list length...): for people, and ``k`` for
    # ranking, which observes at most the reference's list length per response.
    sample: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "sample": self.sample,
                "signals": {name: d.to_json() for name, d in self.signals.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reference:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"schema_version {data.get('schema_version')!r}, expected "
                             f"{SCHEMA_VERSION}")
        return cls({name: Distribution.from_json(d) for name, d in data["signals"].items()},
                   dict(data.get("sample", {})))

    def save(self, directory: Path) -> None:
        with open(directory / FILE, "w") as fh:
            json.dump(self.to_json(), fh, indent=1, sort_keys=True)

    @classmethod
    def load(cls, directory: Path) -> Reference | None:
        """The reference saved in ``directory``; None for a version fitted before drift
        references existed (it serves, and exports no drift)."""
        path = directory / FILE
        if not path.is_file():
            return None
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{path}: unreadable drift reference: {exc}") from exc


class Window:
    """Bin counts of the latest ``size`` updates (one per request): a ring of each update's
    counts and their running sum, so an update costs the same few additions however long the
    window, and a scrape reads one sum. Plain lists: with a dozen bins, numpy's per-call
    overhead would be most of the cost."""

    def __init__(self, bins: int, size: int = DEFAULT_WINDOW) -> None:
        if size < 1 or bins < 1:
            raise ValueError("a window needs at least one bin and one slot")
        zero = (0,) * bins
        self._bins = bins
        self._ring: list[Sequence[int]] = [zero] * size
        self._total = [0] * bins
        self._next = 0
        self._filled = 0
        self._lock = threading.Lock()  # concurrent requests update one window

    @property
    def size(self) -> int:
        return len(self._ring)

    @property
    def updates(self) -> int:
        """Updates the window holds (at most ``size``)."""
        return self._filled

    def add(self, counts: Sequence[int]) -> None:
        """One update's count per bin (kept as given: do not change it afterwards)."""
        if len(counts) != self._bins:
            raise ValueError(f"{len(counts)} counts for {self._bins} bins")
        with self._lock:
            total = self._total
            for j, (new, gone) in enumerate(zip(counts, self._ring[self._next], strict=True)):
                total[j] += new - gone
            self._ring[self._next] = counts
            self._next = self._next + 1 if self._next + 1 < len(self._ring) else 0
            if self._filled < len(self._ring):
                self._filled += 1

    def totals(self) -> np.ndarray:
        with self._lock:
            return np.asarray(self._total, dtype=np.int64)


@dataclass(frozen=True)
class Reading:
    signal: str
    psi: float | None  # None until the window has an observation
    observations: int


class Monitor:
    """A server's reference and one window per signal; one per served version, so a new
    version starts from an empty window against its own reference."""

    def __init__(self, reference: Reference, window: int = DEFAULT_WINDOW) -> None:
        self.reference = reference
        self._windows = {name: Window(d.bins, window)
                         for name, d in reference.signals.items()}
        # One row per label, added as is: a categorical observation allocates nothing.
        self._one_hot = {name: [tuple(int(i == j) for j in range(d.bins))
                                for i in range(d.bins)]
                         for name, d in reference.signals.items() if d.labels}

    @classmethod
    def of(cls, reference: Reference | None, window: int = DEFAULT_WINDOW) -> Monitor | None:
        return None if reference is None else cls(reference, window)

    def has(self, signal: str) -> bool:
        return signal in self._windows

    def add(self, signal: str, counts: Sequence[int]) -> None:
        """One request's counts per bin of ``signal`` (ignored when the reference lacks it)."""
        window = self._windows.get(signal)
        if window is not None:
            window.add(counts)

    def add_values(self, signal: str, values: np.ndarray) -> None:
        """One request's values of a numeric signal."""
        window = self._windows.get(signal)
        if window is not None:
            window.add(self.reference.signals[signal].count_few(np.asarray(values).tolist()))

    def add_label(self, signal: str, label: str) -> None:
        """One request's label of a categorical signal (an unknown label is not counted)."""
        window = self._windows.get(signal)
        if window is not None:
            i = self.reference.signals[signal].index(label)
            if i is not None:
                window.add(self._one_hot[signal][i])

    def readings(self) -> list[Reading]:
        """PSI and observation count of every signal over its window, computed on demand
        (a scrape), never on a request."""
        out = []
        for name, window in self._windows.items():
            counts = window.totals()
            n = int(counts.sum())
            value = psi(self.reference.signals[name].proportions, counts) if n else None
            out.append(Reading(name, value, n))
        return out


def source_counts(cands: Candidates, generators: Sequence[str]) -> list[int]:
    """Candidate slots each of ``generators`` proposed (an item two generators proposed
    counts for both): what the source mix is the shares of."""
    proposed = (cands.ranks > 0).sum(axis=0).tolist()
    if tuple(generators) == cands.generators:
        return proposed
    columns = [cands.column(name) for name in generators]
    return [0 if col is None else proposed[col] for col in columns]
