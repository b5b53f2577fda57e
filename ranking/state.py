"""Ranking's live state: the versions it holds and the items it learns while serving.

The serving version and the one before it stay loaded, so a request retrieved with either is
ranked with the same version while both servers move to a new one: a response never mixes
versions. Items newer than a version's model (upserted after it was published) are learned
from the details retrieval sends, under a lock, so they can be ranked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from shortlist.common.candidates import Candidates
from shortlist.common.drift import DEFAULT_WINDOW, POPULARITY, SCORE, Monitor
from shortlist.common.rules import Rule, pins, place_pins, score_rules
from shortlist.ranking.bundle import RankingModels
from shortlist.ranking.errors import InvalidRequest, NotReady, VersionNotLoaded
from shortlist.ranking.pipeline import RankingPipeline


@dataclass(frozen=True)
class ItemDetails:
    title: str
    categories: tuple[str, ...] = ()


@dataclass
class Ranked:
    items: np.ndarray  # item indices in final order
    scores: np.ndarray  # the ranker's scores of those items
    timings_ms: dict[str, float]
    learned: int  # items this request taught the version
    configuration: str = ""  # what ordered them (see ranking.pipeline.configuration_name)
    # Business rules that moved, added or pinned each returned item (by item index).
    rules: dict[int, list[str]] = field(default_factory=dict)
    # With explain, by item index: the features that moved its score most (name,
    # description, contribution) and the user's recent item it resembles most (-1: none).
    contributions: dict[int, list[tuple[str, str, float]]] = field(default_factory=dict)
    because_of: dict[int, int] = field(default_factory=dict)
    # With explain, by item index: its 1-based position by the ranker's score before
    # diversity and pins (absent when another order served).
    score_ranks: dict[int, int] = field(default_factory=dict)


@dataclass
class LoadedVersion:
    """One artifact version's ranking models, usable by concurrent requests."""

    models: RankingModels
    pipeline: RankingPipeline
    version: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Scores and popularity of what this version returns, against its reference (None for
    # a version without one); per version, so a new version starts a fresh window.
    drift: Monitor | None = None

    @classmethod
    def of(cls, models: RankingModels, version: str,
           drift_window: int = DEFAULT_WINDOW) -> LoadedVersion:
        return cls(models, models.pipeline(), version,
                   drift=Monitor.of(models.drift, drift_window))

    def observe_drift(self, ranked: Ranked) -> None:
        """Count the head of a list served as the reference was drawn (``rank`` calls it only
        for the version's own order and diversity weight, without business rules, which move
        scores by design): at most the reference's list length, since a longer list reaches
        lower scores. A few microseconds (python -m shortlist.perf.drift)."""
        n = int(self.drift.reference.sample.get("k", len(ranked.items)))
        self.drift.add_values(SCORE, ranked.scores[:n])
        self.drift.add_values(POPULARITY, self.models.stats.popularity[ranked.items[:n]])

    def learn_items(self, ids: list[str], details: Mapping[str, ItemDetails]) -> int:
        """Add ids this version has never seen; an undescribed one is learned bare (its id
        as title, no categories) rather than dropped, so it can still be served."""
        vocab = self.models.catalog.vocab
        new = [i for i in ids if i not in vocab]
        if not new:
            return 0
        catalog, stats = self.models.catalog, self.models.stats
        added = 0
        with self.lock:
            for item_id in new:
                if item_id in vocab:
                    continue  # another request added it meanwhile
                item = details.get(item_id) or ItemDetails(item_id)
                cols = [c for c in catalog.category_vocab.indices(item.categories) if c >= 0]
                stats.append_item(cols)
                catalog.add(item_id, item.title, list(item.categories))
                added += 1
        return added

    def rank(self, cands: Candidates, k: int, mmr_lambda: float | None,
             rules: Sequence[Rule] = (), explain: bool = False, order: str = "") -> Ranked:
        """``order`` (checked with ``pipeline.check_order``) replaces the artifact's."""
        configuration = self.pipeline.configuration(mmr_lambda, order)
        if not rules:
            pos, scores, timings = self.pipeline.rank(cands, k, mmr_lambda, order or None)
            ranked = Ranked(cands.items[pos], scores, timings, 0, configuration)
            config = self.pipeline.config
            if (self.drift is not None and len(ranked.items) and order in ("", config.order)
                    and (mmr_lambda is None or abs(mmr_lambda - config.mmr_lambda) < 1e-6)):
                self.observe_drift(ranked)
            if explain:
                self._explain(ranked, cands, pos, order)
            return ranked
        catalog = self.models.catalog
        items = cands.items.tolist()
        scored = score_rules(rules, [catalog.vocab.id(i) for i in items],
                             [catalog.categories[i] for i in items])
        # Excluded candidates go first, here, so that what explain recomputes is what the
        # ranker scored (positions in the merged list are a feature).
        rows = np.flatnonzero(scored.keep)
        kept = cands.take(rows) if len(rows) < len(cands) else cands
        pinned = [(catalog.vocab.index(r.item_id), r) for r in pins(rules)]
        # room for the pins: what they push down must still fill k
        pos, scores, timings = self.pipeline.rank(kept, k + len(pinned), mmr_lambda,
                                                  order or None, shift=scored.shift[rows])
        notes = {items[rows[p]]: scored.notes[rows[p]] for p in pos.tolist()
                 if scored.notes[rows[p]]}
        score_of = dict(zip(kept.items[pos].tolist(), scores.tolist(), strict=True))
        known = [(item, r) for item, r in pinned if item >= 0]
        for item, r in known:
            notes.setdefault(item, []).append(r.describe())
        final = place_pins(kept.items[pos].tolist(), [(i, r.position) for i, r in known], k)
        ranked = Ranked(np.asarray(final, np.int64),
                        np.asarray([score_of.get(i, 0.0) for i in final], np.float32), timings,
                        0, configuration, {i: notes[i] for i in final if i in notes})
        if explain:
            row_of = {item: p for p, item in enumerate(kept.items.tolist())}
            self._explain(ranked, kept,
                          np.asarray([row_of[i] for i in final if i in row_of], np.int64),
                          order, scored.shift[rows])
        return ranked

    def _explain(self, ranked: Ranked, cands: Candidates, positions: np.ndarray,
                 order: str = "", shift: np.ndarray | None = None) -> None:
        t0 = time.perf_counter()
        contrib, closest = self.pipeline.explain(cands, positions, order)
        by_score = self.pipeline.score_ranks(cands, positions, order, shift)
        ranked.timings_ms["explain"] = (time.perf_counter() - t0) * 1e3
        for item, c, near, rank in zip(cands.items[positions].tolist(), contrib,
                                       closest.tolist(), by_score.tolist(), strict=True):
            ranked.contributions[item] = c
            if near >= 0:
                ranked.because_of[item] = near
            if rank:
                ranked.score_ranks[item] = rank


class RankingState:
    """The versions this server holds; ``install`` is the version watcher's swap."""

    KEEP = 2

    def __init__(self) -> None:
        self._versions: dict[str, LoadedVersion] = {}
        self._current: LoadedVersion | None = None

    @property
    def ready(self) -> bool:
        return self._current is not None

    @property
    def current(self) -> LoadedVersion:
        current = self._current
        if current is None:
            raise NotReady("models are still loading")
        return current

    @property
    def versions(self) -> tuple[str, ...]:
        """Loaded version names, oldest first."""
        return tuple(self._versions)

    def install(self, loaded: LoadedVersion, version: str) -> None:
        versions = dict(self._versions)
        versions.pop(version, None)
        versions[version] = loaded
        while len(versions) > self.KEEP:
            versions.pop(next(iter(versions)))
        self._versions = versions  # one reference swap: readers see the old or the new dict
        self._current = loaded

    def pick(self, version: str) -> LoadedVersion:
        """The named version (empty: the current one), or VersionNotLoaded."""
        current = self.current
        if not version:
            return current
        loaded = self._versions.get(version)
        if loaded is None:
            raise VersionNotLoaded(f"version {version} is not loaded here (serving "
                                   f"{current.version})")
        return loaded

    def rank(self, version: str, cands: Candidates, item_ids: list[str],
             details: Mapping[str, ItemDetails], k: int,
             mmr_lambda: float | None, rules: Sequence[Rule] = (),
             explain: bool = False, order: str = "") -> Ranked:
        """Rank ``cands`` (items as indices of the named version; -1 for ids it has never
        seen, which ``item_ids`` names) with that version, under the business ``rules``
        (checked already). A pinned item this version does not know is left out."""
        loaded = self.pick(version)
        try:
            order = loaded.pipeline.check_order(order)
        except ValueError as exc:
            raise InvalidRequest(f"order: {exc}") from None
        learned = 0
        if (cands.items < 0).any():
            learned = loaded.learn_items(item_ids, details)
            cands.items = loaded.models.catalog.vocab.indices(item_ids)
        if len(cands.items) and cands.items.max() >= len(loaded.models.stats):
            raise InvalidRequest("a candidate is not in this version's statistics")
        ranked = loaded.rank(cands, k, mmr_lambda, rules, explain, order)
        ranked.learned = learned
        return ranked
