"""Event types: what kind of interaction an event was, and how much (and which way) it counts.

A view, a purchase and a dislike all arrive as one interaction row. Each type maps to a signed
weight that multiplies the event's own weight (a rating, a play count, 1): positive types say
"more like this", negative ones (dislike, skip) say "not this" -- the item is excluded for the
user and their vectors are pushed away from it. The signs are configuration; how much each
positive or negative type counts is tuned on validation when the data has types.

Data without types has one implicit type, ``""``, with weight 1: it is served exactly as before
types existed. The table is saved with every artifact (the artifact owns model behaviour), so
the write path and training weigh an event the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

UNTYPED = ""  # the type of an event that names none
# Known types and their weights before tuning: the common vocabulary of production logs.
STANDARD: dict[str, float] = {
    "view": 1.0, "click": 1.0, "rating": 1.0, "like": 2.0, "purchase": 4.0,
    "skip": -0.5, "dislike": -2.0,
}
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")


class UnknownEventType(ValueError):
    """An event names a type the artifact's table does not have (or a malformed name)."""


def normalise(name: str) -> str:
    """Type names compare case-insensitively and without surrounding blanks."""
    return name.strip().lower()


def check_name(name: str) -> str:
    name = normalise(name)
    if name != UNTYPED and not NAME.fullmatch(name):
        raise UnknownEventType(f"event type {name!r} is not a name: 1-32 characters of a-z, "
                               "0-9, '_', '.' or '-', starting with a letter or digit")
    return name


@dataclass(frozen=True)
class EventTypes:
    """Signed weight per type name; ``names`` fixes the codes (index into it)."""

    names: tuple[str, ...]
    weights: tuple[float, ...]

    @classmethod
    def standard(cls, configured: Mapping[str, float] | None = None,
                 seen: Iterable[str] = ()) -> EventTypes:
        """The standard table, plus types the data uses (weight 1: an unknown kind of event
        is taken as a positive one unless configured), with ``configured`` weights on top."""
        table = {UNTYPED: 1.0, **STANDARD}
        for name in seen:
            table.setdefault(check_name(name), 1.0)
        for name, weight in (configured or {}).items():
            table[check_name(name)] = float(weight)
        return cls(tuple(table), tuple(table.values()))

    def __post_init__(self) -> None:
        if len(self.names) != len(self.weights) or len(set(self.names)) != len(self.names):
            raise ValueError("event types: one weight per distinct name")

    def code(self, name: str) -> int:
        """Index of ``name``; UnknownEventType names the types there are."""
        name = check_name(name)
        try:
            return self.names.index(name)
        except ValueError:
            known = ", ".join(n for n in self.names if n) or "none"
            raise UnknownEventType(f"unknown event type {name!r}; this model knows: "
                                   f"{known}") from None

    def weight(self, name: str) -> float:
        return self.weights[self.code(name)]

    def codes(self, names: Iterable[str]) -> np.ndarray:
        return np.asarray([self.code(n) for n in names], dtype=np.int16)

    @property
    def multipliers(self) -> np.ndarray:
        return np.asarray(self.weights, dtype=np.float32)

    def negative(self, codes: np.ndarray) -> np.ndarray:
        """Events of a negative type: never a relevant item, never popularity."""
        return self.multipliers[np.asarray(codes, dtype=np.int64)] < 0

    def apply(self, weights: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Each event's own weight times its type's: signed, float32."""
        return (np.asarray(weights, dtype=np.float32)
                * self.multipliers[np.asarray(codes, dtype=np.int64)])

    def replace(self, **weights: float) -> EventTypes:
        """The table with some types re-weighted (tuning); a sign never flips here."""
        table = dict(zip(self.names, self.weights, strict=True))
        for name, weight in weights.items():
            table[name] = float(weight)
        return EventTypes(tuple(table), tuple(table.values()))

    def to_json(self) -> dict[str, float]:
        return dict(zip(self.names, self.weights, strict=True))

    @classmethod
    def from_json(cls, data: Mapping[str, float] | None) -> EventTypes:
        """An artifact's table; one written before types existed has the standard one."""
        if not data:
            return cls.standard()
        return cls(tuple(data), tuple(float(w) for w in data.values()))
