"""Ranker features: the one definition that training and the ranking server both call.

Inputs are what retrieval knows about each candidate for this user (generator scores and
ranks, ALS and taste similarity) plus item-side statistics owned by ranking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

GENERATORS = ("als", "content", "trending")
DAY = 86400.0

FEATURE_NAMES = [
    *(f"{g}_{kind}" for g in GENERATORS for kind in ("gen_score", "gen_rank")),
    "n_sources",
    "retrieval_rank",
    "retrieval_score",
    "als_score",
    "taste_score",
    "recent_sim",
    "recent5_sim_max",
    "als_recent_sim",
    "als_recent5_sim_max",
    "popularity",
    "trending",
    "pop_at_user_time",
    "item_age_days",
    "item_age_at_user_time",
    "history_length",
    "genre_affinity",
]

_KEY_SPAN = np.int64(1) << 33  # > any unix time in seconds until the year 2242

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
    vectors: np.ndarray  # content unit vectors (also used by MMR)
    now: int
    als_vectors: np.ndarray  # unit-normalised ALS item factors (item-item similarity)
    times_indptr: np.ndarray  # per-item event times, CSR: times[indptr[i]:indptr[i+1]]
    times: np.ndarray | None  # int64, sorted within each item; None once compacted
    # item * 2**33 + time per event, sorted: what count_between searches (built on demand)
    time_keys: np.ndarray | None = field(default=None, repr=False)

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
        self.vectors = np.vstack([self.vectors, np.zeros((1, self.vectors.shape[1]),
                                                         self.vectors.dtype)])
        self.als_vectors = np.vstack([self.als_vectors, np.zeros(
            (1, self.als_vectors.shape[1]), self.als_vectors.dtype)])
        self.times_indptr = np.append(self.times_indptr, self.times_indptr[-1])
        return idx

    def count_between(self, items: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Events of each item with lo < t <= hi.

        Events are keyed ``item * 2**33 + time`` (sorted, since times are sorted within an
        item). The binary search runs inside each item's own slice, all candidates at once:
        a search over all 20M keys misses the cache at every step (0.75 ms per request at
        scale), one confined to an item's slice stays within a few cache lines.
        """
        if self.time_keys is None:
            self.compact(keep_times=True)
        items = np.asarray(items, dtype=np.int64)
        indptr = self.times_indptr
        starts, ends = indptr[items], indptr[items + 1]
        base = items * _KEY_SPAN
        needles = np.concatenate([base + np.clip(hi, -1, _KEY_SPAN - 1),
                                  base + np.clip(lo, -1, _KEY_SPAN - 1)])
        found = _search_right(self.time_keys, np.concatenate([starts, starts]),
                              np.concatenate([ends, ends]), needles)
        n = len(items)
        return (found[:n] - found[n:]).astype(np.float32)

    def compact(self, keep_times: bool = False) -> None:
        """Build the search keys; without ``keep_times`` drop the times they came from.

        Only the keys are needed to count events: at 20M events keeping both costs 320 MB
        instead of 160. Loaded statistics hold only the keys.
        """
        if self.time_keys is None:
            self.time_keys = _keys_in_place(self.times.copy(), self.times_indptr)
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
                 time_keys=self.time_keys)
        np.save(directory / "item_vectors.npy", self.vectors, allow_pickle=False)
        np.save(directory / "als_vectors.npy", self.als_vectors, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path) -> ItemStats:
        with np.load(directory / "item_stats.npz", allow_pickle=False) as z:
            indices = z["genre_indices"]
            genres = sp.csr_matrix(
                (np.ones(len(indices), np.float32), indices, z["genre_indptr"]),
                shape=tuple(z["genre_shape"]),
            )
            stats = cls(z["popularity"], z["trending"], z["first_seen"], genres,
                        np.load(directory / "item_vectors.npy", allow_pickle=False),
                        int(z["now"]),
                        np.load(directory / "als_vectors.npy", allow_pickle=False),
                        z["times_indptr"], None)
            if "time_keys" in z.files:
                stats.time_keys = z["time_keys"]
            else:  # written before the keys were saved: derive them, in place
                stats.time_keys = _keys_in_place(z["times"], stats.times_indptr)
            return stats


@dataclass
class RankingInput:
    """One user's candidates, as retrieval described them."""

    items: np.ndarray  # int64 item indices
    gen_scores: np.ndarray  # (n, len(GENERATORS)), NaN where the generator did not propose
    gen_ranks: np.ndarray  # (n, len(GENERATORS)), 0 where the generator did not propose
    retrieval_score: np.ndarray
    als_score: np.ndarray
    taste_score: np.ndarray
    history_length: int
    recent_items: np.ndarray  # newest first, item indices (unknown ones dropped)
    user_time: int  # unix time of the user's latest event

    def __len__(self) -> int:
        return len(self.items)


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


def build_features(inp: RankingInput, stats: ItemStats) -> np.ndarray:
    """(n_candidates, len(FEATURE_NAMES)) float32 matrix; NaN means 'not available'."""
    n = len(inp)
    items = inp.items
    cols: list[np.ndarray] = []
    ranks = inp.gen_ranks.astype(np.float32)
    ranks[inp.gen_ranks <= 0] = np.nan
    for g in range(len(GENERATORS)):
        cols.append(inp.gen_scores[:, g].astype(np.float32))
        cols.append(ranks[:, g])
    cols.append((inp.gen_ranks > 0).sum(axis=1).astype(np.float32))
    cols.append(np.arange(1, n + 1, dtype=np.float32))
    cols.append(inp.retrieval_score.astype(np.float32))
    cols.append(inp.als_score.astype(np.float32))
    cols.append(inp.taste_score.astype(np.float32))

    recent = inp.recent_items[inp.recent_items < len(stats)]
    for space in (stats.vectors, stats.als_vectors):
        if len(recent):
            sims = space[items] @ space[recent[:5]].T
            cols.append(sims[:, 0].astype(np.float32))
            cols.append(sims.max(axis=1).astype(np.float32))
        else:
            cols.append(np.full(n, np.nan, np.float32))
            cols.append(np.full(n, np.nan, np.float32))

    cols.append(stats.popularity[items].astype(np.float32))
    cols.append(stats.trending[items].astype(np.float32))
    window = int(POP_WINDOW_DAYS * DAY)
    cols.append(np.log1p(stats.count_between(items, inp.user_time - window, inp.user_time)))
    cols.append(((stats.now - stats.first_seen[items]) / DAY).astype(np.float32))
    cols.append(((inp.user_time - stats.first_seen[items]) / DAY).astype(np.float32))
    cols.append(np.full(n, np.log1p(inp.history_length), np.float32))

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
    return np.column_stack(cols).astype(np.float32) if n else np.zeros(
        (0, len(FEATURE_NAMES)), np.float32)
