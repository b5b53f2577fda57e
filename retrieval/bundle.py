"""Retrieval's part of an artifact version: save from training, load for serving.

Layout under ``retrieval/``: ``users.npy``, ``history.npz``, ``config.json`` (the merge
settings, HNSW parameters, reference time, and each generator's name and config in merge
order), one directory per generator under ``generators/``, written by the generator, and
``drift_reference.json`` (``common.drift``: the source and segment mix the servers compare
their traffic with; absent from versions fitted before it existed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from shortlist.common.artifacts import ArtifactError, read_json, write_json
from shortlist.common.catalog import ItemCatalog
from shortlist.common.drift import Reference
from shortlist.common.events import EventTypes
from shortlist.common.vocab import Vocabulary
from shortlist.retrieval.candidates import CandidateSource, RetrievalConfig
from shortlist.retrieval.generators import (
    Generator,
    HnswParams,
    Registry,
    UserState,
    config_of,
    default_registry,
)
from shortlist.retrieval.history import UserHistory

CATALOG = "catalog.json"
DIR = "retrieval"


@dataclass
class RetrievalModels:
    catalog: ItemCatalog
    users: Vocabulary
    history: UserHistory
    generators: dict[str, Generator]  # merge order
    config: RetrievalConfig
    hnsw: HnswParams
    now: int
    # Seconds each generator took to fit, and why each registered one that was not fitted
    # was skipped (training reports only; not saved).
    fit_seconds: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    # How much each event type counts (signed): applied to every write, saved in config.json.
    event_types: EventTypes = field(default_factory=EventTypes.standard)
    # What serving these models looked like at fit time (training.drift); None: no drift.
    drift: Reference | None = None

    def source(self) -> CandidateSource:
        return CandidateSource(self.generators, self.config)

    def user_state(self, user: int, recent: np.ndarray | None = None,
                   attributes: Mapping[str, str] | None = None) -> UserState:
        """What the generators need to know of user index ``user`` (-1: unknown), with the
        request's recent items and attributes."""
        items, stamps, weights = self.history.events(user)
        return UserState.of(user, items, stamps, weights,
                            np.zeros(0, np.int64) if recent is None else recent, self.now,
                            stored=not self.history.has_overlay(user), attributes=attributes)

    def item_vectors(self) -> dict[str, np.ndarray]:
        """Each generator's item similarity space (what ranking's features compare in)."""
        out = {}
        for name, gen in self.generators.items():
            vectors = gen.item_vectors()
            if vectors is not None:
                out[name] = vectors
        return out

    def with_generator_config(self, name: str, **values) -> None:
        """Change serving-time values of one generator's config (counts, half-lives)."""
        gen = self.generators[name]
        gen.config = dataclasses.replace(gen.config, **values)

    def save(self, root: Path) -> None:
        d = root / DIR
        d.mkdir(parents=True, exist_ok=True)
        if not (root / CATALOG).exists():
            self.catalog.save(root / CATALOG)
        self.users.save(d / "users.npy")
        self.history.save(d / "history.npz")
        for name, gen in self.generators.items():
            gen.save(d / "generators" / name)
        write_json(d / "config.json", {
            "merge": asdict(self.config), "hnsw": asdict(self.hnsw), "now": self.now,
            "generators": [{"name": n, "config": asdict(g.config)}
                           for n, g in self.generators.items()],
            "event_types": self.event_types.to_json(),
        })
        if self.drift is not None:
            self.drift.save(d)

    @classmethod
    def load(cls, root: Path, ef: int | None = None,
             registry: Registry | None = None) -> RetrievalModels:
        registry = registry or default_registry()
        d = root / DIR
        cfg = read_json(d / "config.json")
        if "generators" not in cfg:
            raise ArtifactError(f"{root}: written by an older Shortlist (no generator list in "
                                f"{DIR}/config.json); fit it again")
        hnsw = HnswParams(**cfg["hnsw"])
        if ef:
            hnsw = dataclasses.replace(hnsw, ef=ef)
        catalog = ItemCatalog.load(root / CATALOG)
        generators: dict[str, Generator] = {}
        for entry in cfg["generators"]:
            try:
                gen_cls = registry.get(entry["name"])
                config = config_of(gen_cls, entry["config"])
            except (KeyError, ValueError) as exc:
                raise ArtifactError(f"{root}: {exc.args[0]}") from exc
            generators[entry["name"]] = gen_cls.load(d / "generators" / entry["name"], config,
                                                     catalog, hnsw)
        return cls(
            catalog=catalog, users=Vocabulary.load(d / "users.npy"),
            history=UserHistory.load(d / "history.npz"), generators=generators,
            config=RetrievalConfig(**cfg["merge"]), hnsw=hnsw, now=int(cfg["now"]),
            event_types=EventTypes.from_json(cfg.get("event_types")),
            drift=Reference.load(d),
        )


def banned_mask(n_items: int, *parts: np.ndarray) -> np.ndarray:
    mask = np.zeros(n_items, dtype=bool)
    for p in parts:
        p = np.asarray(p, dtype=np.int64)
        mask[p[(p >= 0) & (p < n_items)]] = True
    return mask
