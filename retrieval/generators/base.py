"""What every candidate generator is: one protocol, fitted and served the same way.

A generator is a plain class over numpy with its own config dataclass. Training fits it from
``FitData`` (and tunes the config values its ``tuning_grid`` names), the artifact saves it in
its own directory, retrieval asks it to ``propose`` items for a ``UserState`` and to score any
item's ``affinity`` for that user, and ranking gets its ``item_vectors`` as a similarity space.
Everything that iterates generators (fit, tuning, the manifest, the ranker's features, the
merge, the leaderboard, the bench) goes through a ``Registry``, so adding a generator is one
module plus its place in ``default_registry``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import scipy.sparse as sp

from shortlist.common.attributes import UserAttributes
from shortlist.common.catalog import ItemCatalog

logger = logging.getLogger(__name__)


class EventArrays(Protocol):
    """Interactions as parallel arrays (training's ``Events`` is one)."""

    users: np.ndarray  # int64 user indices
    items: np.ndarray  # int64 item indices
    timestamps: np.ndarray  # int64 unix seconds
    weights: np.ndarray  # float32 strength (rating, play count, 1)


@dataclass
class HnswParams:
    m: int = 16
    ef_construction: int = 200
    ef: int = 200


@dataclass
class FitData:
    """Everything a generator may learn from; no generator needs all of it."""

    events: EventArrays
    n_users: int
    catalog: ItemCatalog
    now: int  # the reference time: the latest event
    hnsw: HnswParams = field(default_factory=HnswParams)
    seed: int = 42
    # False while tuning: proposals then come from an exact scan, and no index is built for
    # a configuration that is thrown away.
    build_index: bool = True
    progress: bool = False
    # User attributes and social ties aligned to the user indices, when the data has them.
    attributes: UserAttributes | None = None
    friends: sp.csr_matrix | None = None
    # Typed data's negative events (dislikes, skips; weights below zero), kept out of
    # ``events``: a generator that can learn "not this" (ALS) reads them, the others need not.
    negatives: EventArrays | None = None


@dataclass
class UserState:
    """What retrieval knows of one user for one request.

    ``items``/``stamps``/``weights`` are the known history, oldest first, followed by the
    request's ``recent`` items (treated as the newest events). ``memo`` caches each generator's
    picture of the user (an ALS vector, a taste vector) for the length of the request, so
    ``propose`` and ``affinity`` compute it once.
    """

    user: int  # index in the user vocabulary; -1 for an unknown user
    items: np.ndarray
    stamps: np.ndarray
    weights: np.ndarray
    recent: np.ndarray
    now: int  # the reference time for this user: the model's, or their latest event if later
    stored: bool = True  # the fitted per-user state still describes them (no newer events)
    memo: dict[str, Any] = field(default_factory=dict)
    # Attributes the request gave (age, country...); they override what training stored.
    attributes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, user: int, items: np.ndarray, stamps: np.ndarray, weights: np.ndarray,
           recent: np.ndarray, model_now: int, stored: bool = True,
           attributes: Mapping[str, str] | None = None) -> UserState:
        recent = np.asarray([r for r in dict.fromkeys(np.asarray(recent).tolist()) if r >= 0],
                            dtype=np.int64)
        ref = max(model_now, int(stamps.max()) if len(stamps) else model_now)
        return cls(user, np.concatenate([items, recent]).astype(np.int64),
                   np.concatenate([stamps, np.full(len(recent), ref, np.int64)]),
                   np.concatenate([weights, np.ones(len(recent), np.float32)]), recent, ref,
                   stored and len(recent) == 0, attributes=dict(attributes or {}))


class GeneratorSkipped(Exception):
    """Raised by ``Generator.fit`` when the data cannot support the generator; the message says
    why, and training logs it and records it in the manifest."""


class Generator:
    """Base class of candidate generators; subclasses set ``name`` and ``Config``.

    ``Config`` is a dataclass with at least ``candidates`` (proposals per established user)
    and ``light_factor`` (the share for users with a short history: ALS knows little of
    them, content needs only a few items). The instance keeps its config in ``self.config``.
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    # Proposes for a user with no history at all (the "new" rung of the cold-start ladder).
    serves_new_users: ClassVar[bool] = False
    # How tuning scores a configuration: "ndcg" (NDCG@10 of the generator alone, for
    # generators that are good recommenders by themselves) or "recall" (recall at its
    # candidate count: what a generator is for).
    objective: ClassVar[str] = "recall"
    # Its item vectors describe what items are (text, categories) rather than who consumes
    # them: the space diversity (MMR, intra-list diversity) prefers.
    content_space: ClassVar[bool] = False
    # Config values for data without real timestamps (no decay), never tuned there.
    untimed: ClassVar[dict[str, Any]] = {}

    config: Any

    # -- training ------------------------------------------------------------------------

    @classmethod
    def fit(cls, data: FitData, config: Any, previous: Generator | None = None
            ) -> Generator | None:
        """A fitted generator; ``GeneratorSkipped`` (or None, with a log line) when the data
        cannot support it.

        ``previous`` is the same generator fitted on a subset of these events, or with other
        config values: what does not depend on them may be reused (a content model depends
        only on the catalog), and iterative models may start from it.
        """
        raise NotImplementedError(f"{cls.__name__}.fit")

    @classmethod
    def fit_each(cls, data: FitData, configs: Iterable[Any], previous: Generator | None = None
                 ) -> Iterator[Generator | None]:
        """``fit`` for each config in turn, lazily (tuning holds one variant at a time).

        A generator whose configs share costly work overrides this to do it once per group
        of consecutive configs that agree on it (EASE's dense inverse across weight counts).
        """
        for config in configs:
            yield cls.fit(data, config, previous)

    @classmethod
    def tuning_grid(cls, config: Any) -> list[dict[str, Any]]:
        """Config overrides to try on validation; the default config counts as tried."""
        return []

    @classmethod
    def refine_grid(cls, best: dict[str, Any], tried: list[dict[str, Any]], rounds: int = 1
                    ) -> list[dict[str, Any]]:
        """Config overrides for round ``rounds + 1``, around ``best`` of round ``rounds``.

        A coarse grid keeps tuning cheap, but a value that matters on a log scale (a
        regulariser) can sit between two grid points or past the grid's edge on data of
        another shape; one finer round finds it for a few more fits. A search that climbs
        (one value at a time, each step from the last one's best) asks for more rounds.
        Called after every round, with everything ``tried`` so far, until it proposes
        nothing untried (``training.fit.MAX_TUNING_ROUNDS`` at most). None by default.
        """
        return []

    # -- serving -------------------------------------------------------------------------

    def propose(self, user: UserState, k: int,
                banned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` unbanned item indices for the user and their scores, best first."""
        raise NotImplementedError(f"{type(self).__name__}.propose")

    def propose_many(self, users: Sequence[UserState], k: int,
                     banned: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """``propose`` for each user, in order. A generator whose proposal is a scan of item
        vectors overrides it to scan once per block of users (training scores thousands)."""
        return [self.propose(u, k, b) for u, b in zip(users, banned, strict=True)]

    def affinity(self, user: UserState, items: np.ndarray) -> np.ndarray | None:
        """This generator's score of any ``items`` for the user; None if it has no picture
        of the user (or never has one)."""
        return None

    def item_vectors(self) -> np.ndarray | None:
        """Unit item vectors (by item index) whose dot products mean 'similar'; None if the
        generator has none. Ranking's features compare candidates to recent items in it."""
        return None

    def similar_items(self, item: int, k: int,
                      banned: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Items most like ``item``; None when this generator cannot say."""
        return None

    def add_item(self, idx: int, document: str) -> None:
        """Make room for (or re-describe) catalog item ``idx`` added while serving."""

    def warm(self) -> None:
        """Do once at load what the first request would otherwise pay for."""

    def save(self, directory: Path) -> None:
        raise NotImplementedError(f"{type(self).__name__}.save")

    @classmethod
    def load(cls, directory: Path, config: Any, catalog: ItemCatalog,
             hnsw: HnswParams) -> Generator:
        raise NotImplementedError(f"{cls.__name__}.load")


def fit_or_skip(cls: type[Generator], data: FitData, config: Any,
                previous: Generator | None = None) -> tuple[Generator | None, str | None]:
    """``cls.fit``, or None and the reason it was skipped (training reports the reasons once
    per fit: a generator is fitted several times, and its inputs do not change)."""
    try:
        gen = cls.fit(data, config, previous)
    except GeneratorSkipped as exc:
        logger.debug("%s generator skipped: %s", cls.name, exc)
        return None, str(exc)
    return gen, None if gen is not None else "the data cannot support it (see the log)"


def fit_each_or_skip(cls: type[Generator], data: FitData, configs: list[Any],
                     previous: Generator | None = None) -> Iterator[Generator | None]:
    """``cls.fit_each``, one result per config: None where the data cannot support it.

    ``GeneratorSkipped`` ends the generator's iterator, and what the data cannot support
    does not depend on the tuned values, so the configs left are skipped too.
    """
    done = 0
    try:
        for gen in cls.fit_each(data, configs, previous):
            done += 1
            yield gen
    except GeneratorSkipped as exc:
        logger.debug("%s generator skipped: %s", cls.name, exc)
        yield from [None] * (len(configs) - done)


def refine_log_scale(best: Mapping[str, Any], tried: Iterable[Mapping[str, Any]],
                     key: str) -> list[dict[str, Any]]:
    """``best`` with ``key`` at the geometric midpoints to its neighbours among the ``tried``
    values, and one step past the grid's edge when the best is at it; values already tried
    are left out.

    The step past an edge mirrors the step inside it (best 30 of 30, 100, ...: 9 is tried).
    """
    values = sorted({float(t[key]) for t in tried if key in t and float(t[key]) > 0})
    if key not in best or len(values) < 2 or float(best[key]) not in values:
        return []
    b = float(best[key])
    i = values.index(b)
    lower = values[i - 1] if i > 0 else b * b / values[1]
    upper = values[i + 1] if i < len(values) - 1 else b * b / values[-2]
    new = {math.sqrt(lower * b), math.sqrt(b * upper)}
    if i == 0:
        new.add(lower)
    if i == len(values) - 1:
        new.add(upper)
    rounded = sorted({float(f"{v:.3g}") for v in new} - set(values))
    return [{**best, key: v} for v in rounded]


def config_of(cls: type[Generator], values: Mapping[str, Any] | None = None) -> Any:
    """``cls.Config`` from its defaults overridden by ``values``; unknown keys are an error."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"generator {cls.name!r} has no setting {', '.join(unknown)} "
                         f"(it has {', '.join(sorted(known))})")
    return cls.Config(**values)


class Registry:
    """The generators a process knows, by name, in merge order.

    Order matters: the merge lists candidates generator by generator, so it breaks ties in
    fused rank. Passed explicitly (never a module-level mutable), so a test can add a toy
    generator to one fit and one server without touching anything else.
    """

    def __init__(self, classes: Iterable[type[Generator]]) -> None:
        self._classes: dict[str, type[Generator]] = {}
        for cls in classes:
            if cls.name in self._classes:
                raise ValueError(f"two generators are named {cls.name!r}")
            self._classes[cls.name] = cls

    def __iter__(self) -> Iterator[type[Generator]]:
        return iter(self._classes.values())

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __len__(self) -> int:
        return len(self._classes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._classes)

    def get(self, name: str) -> type[Generator]:
        try:
            return self._classes[name]
        except KeyError:
            raise KeyError(f"no generator named {name!r} is registered (known: "
                           f"{', '.join(self._classes)})") from None

    def with_generator(self, cls: type[Generator]) -> Registry:
        """This registry plus ``cls`` (replacing one of the same name), appended last."""
        return Registry([*(c for c in self if c.name != cls.name), cls])

    def without(self, *names: str) -> Registry:
        return Registry([c for c in self if c.name not in names])
