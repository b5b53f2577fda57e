"""Business rules: boost, bury, pin and exclude, applied around the ranker's order.

A rule says what the model cannot know (a campaign, stock, a contract), so it acts on the
served list and never on what the model learns. Boosts and burials work in log-odds: the
ranker's scores are LambdaRank log-odds, so "boost by 2" doubles an item's odds of being
chosen however the scores are scaled, and the diversity stage that follows still sees one
consistent score. Pins act last, after diversity, because a pinned position is a promise.
Exclusions are filters: the item is gone before anything else looks at it.

Ranking applies the rules on its path and the gateway on the degraded one (retrieval's order),
so a rule holds whichever path served the request.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from shortlist.common.errors import InvalidArgument

ACTIONS = ("BOOST", "BURY", "PIN", "EXCLUDE")
MAX_RULES = 100
MAX_POSITION = 1000
MAX_FACTOR = 1e6
MAX_TARGET = 256  # characters of an item id or a category name

T = TypeVar("T", bound=Hashable)


class InvalidRule(InvalidArgument):
    """A rule that cannot be applied as written; the message names it and why."""


@dataclass(frozen=True)
class Rule:
    action: str  # one of ACTIONS
    item_id: str = ""
    category: str = ""
    factor: float = 0.0
    position: int = 0

    def describe(self) -> str:
        """How explanations name the rule: "boost category=Comedy x2", "pin i5 at 1"."""
        target = f"item={self.item_id}" if self.item_id else f"category={self.category}"
        if self.action == "PIN":
            return f"pin item={self.item_id} at {self.position}"
        if self.action in ("BOOST", "BURY"):
            return f"{self.action.lower()} {target} x{self.factor:g}"
        return f"{self.action.lower()} {target}"

    def matches(self, item_id: str, categories: Sequence[str]) -> bool:
        if self.item_id:
            return item_id == self.item_id
        return self.category in categories

    @classmethod
    def from_proto(cls, msg) -> Rule:
        """From a ``shortlist.v1.Rule`` message (an unset action becomes "", refused by
        ``check_rules``)."""
        try:
            action = type(msg).Action.Name(msg.action) if msg.action else ""
        except ValueError:  # a number this contract does not name
            action = f"action {msg.action}"
        return cls(action, msg.item_id, msg.category, float(msg.factor), int(msg.position))

    @property
    def shift(self) -> float:
        """The change in log-odds a boost or burial makes."""
        return math.log(self.factor) * (1.0 if self.action == "BOOST" else -1.0)


def read_rules(messages: Sequence) -> list[Rule]:
    """A request's ``rules`` field, checked (InvalidRule names the first bad one)."""
    if len(messages) > MAX_RULES:
        raise InvalidRule(f"at most {MAX_RULES} rules per request, got {len(messages)}")
    return check_rules([Rule.from_proto(m) for m in messages])


def check_rules(rules: Sequence[Rule]) -> list[Rule]:
    """The rules, or InvalidRule for the first that cannot be applied as written (by its
    1-based index), including two pins that contradict each other or a pin of an item that
    another rule excludes."""
    if len(rules) > MAX_RULES:
        raise InvalidRule(f"at most {MAX_RULES} rules per request, got {len(rules)}")
    pinned_items: dict[str, int] = {}
    pinned_positions: dict[int, int] = {}
    excluded: set[str] = set()
    for n, rule in enumerate(rules, 1):
        _check_one(n, rule)
        if rule.action == "PIN":
            for key, seen, what in ((rule.item_id, pinned_items, "item"),
                                    (rule.position, pinned_positions, "position")):
                if key in seen:
                    raise InvalidRule(f"rule {n} ({rule.describe()}): rule {seen[key]} pins "
                                      f"the same {what}")
                seen[key] = n  # type: ignore[index]
        elif rule.action == "EXCLUDE" and rule.item_id:
            excluded.add(rule.item_id)
    for item, n in pinned_items.items():
        if item in excluded:
            raise InvalidRule(f"rule {n} pins item {item!r}, which another rule excludes")
    return list(rules)


def _check_one(n: int, rule: Rule) -> None:
    def bad(why: str) -> InvalidRule:
        return InvalidRule(f"rule {n} ({rule.action or 'no action'}): {why}")

    if rule.action not in ACTIONS:
        raise bad(f"action must be one of {', '.join(ACTIONS)}")
    if bool(rule.item_id) == bool(rule.category):
        raise bad("set exactly one of item_id and category")
    for value in (rule.item_id, rule.category):
        if len(value) > MAX_TARGET or "\x00" in value:
            raise bad(f"a target is at most {MAX_TARGET} characters, without NUL")
    if rule.action == "PIN":
        if not rule.item_id:
            raise bad("a pin names one item (item_id), not a category")
        if not 1 <= rule.position <= MAX_POSITION:
            raise bad(f"position must be 1 to {MAX_POSITION}, got {rule.position}")
    elif rule.position:
        raise bad("position is for PIN only")
    if rule.action in ("BOOST", "BURY"):
        if not (math.isfinite(rule.factor) and 1.0 < rule.factor <= MAX_FACTOR):
            raise bad(f"factor must be greater than 1 and at most {MAX_FACTOR:g}, got "
                      f"{rule.factor:g}")
    elif rule.factor:
        raise bad("factor is for BOOST and BURY only")


@dataclass
class Scored:
    """What the boost, bury and exclude rules make of a list of candidates."""

    keep: np.ndarray  # bool per candidate: False where an exclusion matched
    shift: np.ndarray  # float per candidate: log-odds to add to its score
    notes: list[list[str]]  # per candidate: the rules that matched it


def score_rules(rules: Sequence[Rule], item_ids: Sequence[str],
                categories: Sequence[Sequence[str]]) -> Scored:
    """Match every non-pin rule against each candidate; shifts add up."""
    n = len(item_ids)
    keep, shift = np.ones(n, bool), np.zeros(n, np.float64)
    notes: list[list[str]] = [[] for _ in range(n)]
    active = [r for r in rules if r.action != "PIN"]
    if not active:
        return Scored(keep, shift, notes)
    for j, (item, cats) in enumerate(zip(item_ids, categories, strict=True)):
        for rule in active:
            if rule.matches(item, cats):
                notes[j].append(rule.describe())
                if rule.action == "EXCLUDE":
                    keep[j] = False
                else:
                    shift[j] += rule.shift
    return Scored(keep, shift, notes)


def pins(rules: Sequence[Rule]) -> list[Rule]:
    """The pin rules, by position."""
    return sorted((r for r in rules if r.action == "PIN"), key=lambda r: r.position)


def place_pins(order: Sequence[T], pinned: Sequence[tuple[T, int]], k: int) -> list[T]:
    """``order`` with each pinned value at its 1-based position (moved there if present,
    inserted if not; a position past the end appends), then cut to ``k``.

    Pins go in position order, so each lands where it asked and none pushes another away.
    """
    out = list(order)
    placed = {value for value, _ in pinned}
    out = [v for v in out if v not in placed]
    for value, position in sorted(pinned, key=lambda p: p[1]):
        out.insert(min(position - 1, len(out)), value)
    return out[:k]
