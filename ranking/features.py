"""Ranker features: the one definition that training and the ranking server both call.

Inputs are what retrieval knows about each candidate for this user (every generator's score,
rank and affinity, in the candidate contract) plus item-side statistics owned by ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from shortlist.common.candidates import Candidates
from shortlist.common.timestamps import time_offsets

DAY = 86400.0

# Item-side features every ranker has, after the per-generator and per-space ones.
ITEM_FEATURES = ("popularity", "trending")
# Features that compare an item's history with the user's moment; meaningless without real
# timestamps, so a spec without time leaves them out.
TIME_FEATURES = ("pop_at_user_time", "item_age_days", "item_age_at_user_time")
USER_FEATURES = ("history_length", "genre_affinity")


@dataclass(frozen=True)
class FeatureSpec:
    """Which features a ranker was trained on: derived from the generators and similarity
    spaces of its artifact, so adding a generator adds its columns and nothing else moves."""

    generators: tuple[str, ...]
    spaces: tuple[str, ...]  # item similarity spaces (a generator's item vectors), by name
    time: bool = True  # the data has real timestamps
    # Event types counted per item (typed data with two or more types; else none): how often
    # an item is bought, or disliked, says what plain popularity cannot.
    events: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [
            *(f"{g}_{kind}" for g in self.generators for kind in ("score", "rank", "affinity")),
            "n_sources", "retrieval_rank", "retrieval_score",
            *(f"{s}_{kind}" for s in self.spaces for kind in self.similarity_kinds),
            *ITEM_FEATURES, *(TIME_FEATURES if self.time else ()), *USER_FEATURES,
            *(f"events_{e}" for e in self.events),
        ]

    @property
    def similarity_kinds(self) -> tuple[str, str]:
        """With time: similarity to the most recent item and the best of the five latest.
        Without, "recent" means nothing: the best and the mean over the items carried."""
        return ("recent_sim", "recent5_sim_max") if self.time else ("history_sim_max",
                                                                    "history_sim_mean")

    def to_json(self) -> dict:
        out = {"generators": list(self.generators), "spaces": list(self.spaces),
               "time": self.time}
        if self.events:
            out["events"] = list(self.events)
        return out

    @classmethod
    def from_json(cls, data: dict) -> FeatureSpec:
        return cls(tuple(data["generators"]), tuple(data["spaces"]), bool(data["time"]),
                   tuple(data.get("events", ())))


_KEY_SPAN = np.int64(1) << 33  # > any unix time in seconds until the year 2242
_TIME_MAX = 1 << 62  # past any time after the base: counts everything, and no int64 overflow
# Up to this many event keys (8 MB) count_between searches all of them at once; above, each
# candidate's own slice (a search over 20M keys missed the cache at every step).
_GLOBAL_SEARCH_KEYS = 1 << 20

# Window for "how popular was this item when the user was last active".
POP_WINDOW_DAYS = 30.0


def _search_right(keys: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                  needles: np.ndarray) -> np.ndarray:
    """``searchsorted(keys[lo[j]:hi[j]], needles[j], "right") + lo[j]`` for every j at once."""
    lo, hi = lo.copy(), hi.copy()
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = (lo + hi) >> 1
        right = active & (keys[np.where(active, mid, 0)] <= needles)
        lo = np.where(right, mid + 1, lo)
        hi = np.where(active & ~right, mid, hi)


def _keys_in_place(times: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """``item * 2**33 + time`` per event, overwriting ``times`` (one array at 20M events)."""
    keys = np.clip(times, 0, _KEY_SPAN - 1, out=times.astype(np.int64, copy=False))
    for item in range(0, len(indptr) - 1, 4096):  # chunks: no events-long temporaries
        hi = min(item + 4096, len(indptr) - 1)
        lo_ev, hi_ev = int(indptr[item]), int(indptr[hi])
        owner = np.repeat(np.arange(item, hi, dtype=np.int64), np.diff(indptr[item:hi + 1]))
        keys[lo_ev:hi_ev] += owner * _KEY_SPAN
    return keys


@dataclass
class ItemStats:
    """Item-side inputs, indexed by item index."""

    popularity: np.ndarray  # log1p(interaction count in training)
    trending: np.ndarray  # time-decayed popularity
    first_seen: np.ndarray  # int64 unix seconds of the first interaction
    genres: sp.csr_matrix  # items x categories, 0/1
    # Unit item vectors by space name (a generator's item vectors): "similar" means a large
    # dot product. The diversity space is also what MMR and intra-list diversity use.
    spaces: dict[str, np.ndarray]
    now: int
    times_indptr: np.ndarray  # per-item event times, CSR: times[indptr[i]:indptr[i+1]]
    times: np.ndarray | None  # int64, sorted within each item; None once compacted
    # What count_between searches (built on demand, see ``compact``): per event, its time after
    # time_base, plus item * 2**33 unless time_sliced (then searched within each item's slice)
    time_keys: np.ndarray | None = field(default=None, repr=False)
    time_base: int = 0
    time_sliced: bool = False
    diversity_space: str = ""  # "" when there is none: MMR then keeps relevance order
    # Typed data: events of each type per item, by type name (FeatureSpec.events).
    event_counts: dict[str, np.ndarray] = field(default_factory=dict)

    def category_shares(self, items: np.ndarray) -> np.ndarray:
        """(len(items), categories) dense rows, each an item's categories summing to 1 (0
        for an item without categories): what calibration compares distributions of."""
        rows = self.genres[np.asarray(items, dtype=np.int64)].toarray().astype(np.float64)
        totals = rows.sum(axis=1, keepdims=True)
        return np.divide(rows, totals, out=np.zeros_like(rows), where=totals > 0)

    @property
    def diversity(self) -> np.ndarray:
        """Unit vectors MMR diversifies in (all zeros, i.e. no similarity, without a space)."""
        vectors = self.spaces.get(self.diversity_space)
        if vectors is None:
            return np.zeros((len(self.popularity), 1), np.float32)
        return vectors

    @staticmethod
    def event_times(items: np.ndarray, timestamps: np.ndarray,
                    n_items: int) -> tuple[np.ndarray, np.ndarray]:
        """CSR of each item's sorted event times, for popularity at any moment."""
        order = np.lexsort((timestamps, items))
        indptr = np.concatenate([[0], np.cumsum(np.bincount(items, minlength=n_items))])
        return indptr.astype(np.int64), timestamps[order].astype(np.int64)

    def append_item(self, genre_columns: list[int]) -> int:
        """Row for an item the model has never seen (e.g. upserted after training).

        It has no interactions yet and no content vector here; genres map to known columns.
        Arrays are replaced, not resized in place, so concurrent readers stay consistent.
        """
        idx = len(self.popularity)
        self.popularity = np.append(self.popularity, np.float32(0))
        self.trending = np.append(self.trending, np.float32(0))
        self.first_seen = np.append(self.first_seen, np.int64(self.now))
        row = np.zeros((1, self.genres.shape[1]), dtype=np.float32)
        row[0, [c for c in genre_columns if 0 <= c < self.genres.shape[1]]] = 1.0
        self.genres = sp.vstack([self.genres, sp.csr_matrix(row)], format="csr")
        self.spaces = {name: np.vstack([v, np.zeros((1, v.shape[1]), v.dtype)])
                       for name, v in self.spaces.items()}
        self.times_indptr = np.append(self.times_indptr, self.times_indptr[-1])
        self.event_counts = {name: np.append(c, np.float32(0))
                             for name, c in self.event_counts.items()}
        return idx

    def count_between(self, items: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Events of each item with lo < t <= hi.

        Up to ``_GLOBAL_SEARCH_KEYS`` events, they are keyed ``item * 2**33 + time`` (sorted,
        since times are sorted within an item) and numpy searches all of them at once. Above,
        the binary search runs inside each item's own slice, all candidates at once: a search
        over all 20M keys misses the cache at every step (0.75 ms per request at scale), one
        confined to an item's slice stays within a few cache lines.
        """
        if self.time_keys is None:
            self.compact(keep_times=True)
        items = np.asarray(items, dtype=np.int64)
        n = len(items)
        # Python ints, bounded before numpy sees them: a request's time may be any int64
        hi = min(max(int(hi) - self.time_base, -1), _TIME_MAX)
        lo = min(max(int(lo) - self.time_base, -1), _TIME_MAX)
        if not self.time_sliced:
            base = items * _KEY_SPAN
            needles = np.concatenate([base + np.clip(hi, -1, _KEY_SPAN - 1),
                                      base + np.clip(lo, -1, _KEY_SPAN - 1)])
            # small enough to stay in cache: numpy's own search over all keys is 10x cheaper
            # (0.02 ms against 0.23 for 600 needles in 100K keys) than the sliced one
            found = np.searchsorted(self.time_keys, needles, side="right")
        else:
            indptr = self.times_indptr
            starts, ends = indptr[items], indptr[items + 1]
            needles = np.concatenate([np.broadcast_to(hi, n), np.broadcast_to(lo, n)])
            found = _search_right(self.time_keys, np.concatenate([starts, starts]),
                                  np.concatenate([ends, ends]), needles)
        return (found[:n] - found[n:]).astype(np.float32)

    def compact(self, keep_times: bool = False) -> None:
        """Build the search keys; without ``keep_times`` drop the times they came from.

        Only the keys are needed to count events, and loaded statistics hold only them: each
        event's time after the earliest. Past ``_GLOBAL_SEARCH_KEYS`` events (or when the
        times span more than an item key's 2**33, as milliseconds over months do) they are
        searched within items' slices and take 4 bytes when the span fits (seconds over 136
        years): 70 MB at 20M events instead of 160 MB of int64, in a server and in a fit.
        """
        if self.time_keys is None:
            offsets, self.time_base = time_offsets(self.times)
            span = int(offsets.max()) if len(offsets) else 0
            self.time_sliced = self.n_events > _GLOBAL_SEARCH_KEYS or span >= _KEY_SPAN
            self.time_keys = (offsets if self.time_sliced
                              else _keys_in_place(offsets.astype(np.int64), self.times_indptr))
        if not keep_times:
            self.times = None

    @property
    def n_events(self) -> int:
        return int(self.times_indptr[-1])

    def __len__(self) -> int:
        return len(self.popularity)

    def save(self, directory: Path) -> None:
        """The event times are saved as their search keys: what a server needs, so that it
        loads 8 bytes per event instead of 16 (times, then keys)."""
        self.compact(keep_times=True)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "item_stats.npz", popularity=self.popularity,
                 trending=self.trending, first_seen=self.first_seen, now=np.int64(self.now),
                 genre_indptr=self.genres.indptr, genre_indices=self.genres.indices,
                 genre_shape=np.asarray(self.genres.shape), times_indptr=self.times_indptr,
                 time_keys=self.time_keys,
                 time_base=np.int64(self.time_base), time_sliced=np.bool_(self.time_sliced),
                 **{f"events_{name}": c for name, c in self.event_counts.items()})
        for name, vectors in self.spaces.items():
            np.save(directory / f"space_{name}.npy", vectors, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path, space_names: Sequence[str],
             diversity_space: str = "") -> ItemStats:
        with np.load(directory / "item_stats.npz", allow_pickle=False) as z:
            indices = z["genre_indices"]
            genres = sp.csr_matrix(
                (np.ones(len(indices), np.float32), indices, z["genre_indptr"]),
                shape=tuple(z["genre_shape"]),
            )
            spaces = {name: np.load(directory / f"space_{name}.npy", allow_pickle=False)
                      for name in space_names}
            stats = cls(z["popularity"], z["trending"], z["first_seen"], genres, spaces,
                        int(z["now"]), z["times_indptr"], None,
                        diversity_space=diversity_space)
            stats.time_keys = z["time_keys"]
            if "time_base" in z.files:  # else keys of absolute times, searched at once
                stats.time_base = int(z["time_base"])
                stats.time_sliced = bool(z["time_sliced"])
            stats.event_counts = {key.removeprefix("events_"): z[key] for key in z.files
                                  if key.startswith("events_")}
            return stats


def _csr_rows(m: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position in ``rows``, column, value) of every stored entry of those rows.

    Plain numpy on the CSR arrays: scipy's row indexing costs ~0.1 ms of checks per call,
    which is most of this feature at serving time.
    """
    starts = m.indptr[rows]
    lengths = m.indptr[rows + 1] - starts
    total = int(lengths.sum())
    owner = np.repeat(np.arange(len(rows)), lengths)
    pos = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    flat = starts[owner] + pos
    return owner, m.indices[flat], m.data[flat]


def build_features(cands: Candidates, stats: ItemStats, spec: FeatureSpec) -> np.ndarray:
    """(n_candidates, len(spec.names)) float32 matrix; NaN means 'not available'.

    Generators are matched by name: one the candidates lack gives NaN columns, one the spec
    lacks is ignored, so a ranker keeps working when retrieval's generators change.
    """
    cands = cands.reorder(spec.generators)
    n = len(cands)
    if n == 0:
        return np.zeros((0, len(spec.names)), np.float32)
    items = cands.items
    cols: list[np.ndarray] = []
    ranks = cands.ranks.astype(np.float32)
    ranks[cands.ranks <= 0] = np.nan
    for g in range(len(spec.generators)):
        cols.append(cands.scores[:, g].astype(np.float32))
        cols.append(ranks[:, g])
        cols.append(cands.affinity[:, g].astype(np.float32))
    cols.append((cands.ranks > 0).sum(axis=1).astype(np.float32))
    cols.append(np.arange(1, n + 1, dtype=np.float32))
    cols.append(cands.retrieval_score.astype(np.float32))

    recent = cands.recent_items[cands.recent_items < len(stats)]
    for name in spec.spaces:
        space = stats.spaces.get(name)
        if len(recent) and space is not None:
            if spec.time:
                sims = space[items] @ space[recent[:5]].T
                cols.append(sims[:, 0].astype(np.float32))
            else:
                sims = space[items] @ space[recent].T
                cols.append(sims.max(axis=1).astype(np.float32))
                sims = sims.mean(axis=1, keepdims=True)
            cols.append(sims.max(axis=1).astype(np.float32))
        else:
            cols.append(np.full(n, np.nan, np.float32))
            cols.append(np.full(n, np.nan, np.float32))

    cols.append(stats.popularity[items].astype(np.float32))
    cols.append(stats.trending[items].astype(np.float32))
    if spec.time:
        window = int(POP_WINDOW_DAYS * DAY)
        cols.append(np.log1p(stats.count_between(items, cands.user_time - window,
                                                 cands.user_time)))
        cols.append(((stats.now - stats.first_seen[items]) / DAY).astype(np.float32))
        cols.append(((cands.user_time - stats.first_seen[items]) / DAY).astype(np.float32))
    cols.append(np.full(n, np.log1p(cands.history_length), np.float32))

    if len(recent):
        genres = stats.genres  # one reference: append_item may replace it meanwhile
        owner, cats, weight = _csr_rows(genres, recent)
        profile = np.bincount(cats, weights=weight, minlength=genres.shape[1]) / len(recent)
        owner, cats, weight = _csr_rows(genres, items)
        n_genres = np.maximum(np.bincount(owner, weights=weight, minlength=n), 1.0)
        matched = np.bincount(owner, weights=weight * profile[cats], minlength=n)
        cols.append((matched / n_genres).astype(np.float32))
    else:
        cols.append(np.full(n, np.nan, np.float32))
    for name in spec.events:
        counts = stats.event_counts.get(name)
        cols.append(np.log1p(counts[items]).astype(np.float32) if counts is not None
                    else np.full(n, np.nan, np.float32))
    return np.column_stack(cols).astype(np.float32)
