"""The candidate contract: what retrieval proposes and ranking scores, in one shape.

Retrieval builds a ``Candidates`` for a user, the gateway forwards it as ``CandidateColumns``,
ranking reads it back, and training builds ranker examples from the very same object, so the
fields are defined once. Generator names travel with the columns: the ranker maps them by name,
so a generator added, removed or reordered in retrieval never shifts another one's columns.

In memory items are indices into the artifact's catalog; on the wire they are external ids.
The per-generator blocks are row-major ``[candidate][generator]`` on the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from shortlist.v1 import common_pb2, retrieval_pb2

SEGMENT_NEW = "new"
SEGMENT_ONBOARDING = "onboarding"
SEGMENT_LIGHT = "light"
SEGMENT_ESTABLISHED = "established"
SEGMENTS = {
    SEGMENT_NEW: common_pb2.USER_SEGMENT_NEW,
    SEGMENT_ONBOARDING: common_pb2.USER_SEGMENT_ONBOARDING,
    SEGMENT_LIGHT: common_pb2.USER_SEGMENT_LIGHT,
    SEGMENT_ESTABLISHED: common_pb2.USER_SEGMENT_ESTABLISHED,
}
SEGMENT_NAMES = {number: name for name, number in SEGMENTS.items()}


class ContractError(ValueError):
    """Columns that do not describe a candidate set (lengths disagree, repeated names)."""


@dataclass
class Candidates:
    """One user's merged candidates, with every generator's view of each."""

    items: np.ndarray  # int64 item indices, merged retrieval order
    generators: tuple[str, ...]  # column order of the three blocks below
    scores: np.ndarray  # (n, G) float32: the generator's own score, NaN where not proposed
    ranks: np.ndarray  # (n, G) int32: 1-based rank in its own list, 0 where not proposed
    # (n, G) float32: how well the item matches the generator's picture of this user, for
    # every candidate (not only its own proposals); NaN where the generator has none.
    affinity: np.ndarray
    retrieval_score: np.ndarray  # (n,) float32 fusion score, the degraded order
    segment: str = SEGMENT_ESTABLISHED
    history_length: int = 0
    recent_items: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    user_time: int = 0  # unix time of the user's latest event ("now" for the user)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def empty(cls, generators: Sequence[str] = ()) -> Candidates:
        g = len(generators)
        return cls(np.zeros(0, np.int64), tuple(generators), np.zeros((0, g), np.float32),
                   np.zeros((0, g), np.int32), np.zeros((0, g), np.float32),
                   np.zeros(0, np.float32))

    def column(self, generator: str) -> int | None:
        """Column of ``generator`` in the blocks, None when it is not among them."""
        try:
            return self.generators.index(generator)
        except ValueError:
            return None

    def take(self, rows: np.ndarray) -> Candidates:
        """These rows (positions), in this order; the user fields are shared."""
        return Candidates(self.items[rows], self.generators, self.scores[rows],
                          self.ranks[rows], self.affinity[rows], self.retrieval_score[rows],
                          self.segment, self.history_length, self.recent_items,
                          self.user_time, self.timings_ms)

    def reorder(self, generators: Sequence[str]) -> Candidates:
        """The blocks with columns in ``generators`` order: a name this set lacks is an
        empty column (NaN scores, rank 0), a name not asked for is dropped."""
        generators = tuple(generators)
        if generators == self.generators:
            return self
        n, g = len(self), len(generators)
        scores = np.full((n, g), np.nan, np.float32)
        ranks = np.zeros((n, g), np.int32)
        affinity = np.full((n, g), np.nan, np.float32)
        for j, name in enumerate(generators):
            src = self.column(name)
            if src is not None:
                scores[:, j], ranks[:, j] = self.scores[:, src], self.ranks[:, src]
                affinity[:, j] = self.affinity[:, src]
        return Candidates(self.items, generators, scores, ranks, affinity,
                          self.retrieval_score, self.segment, self.history_length,
                          self.recent_items, self.user_time, self.timings_ms)

    # -- wire format -------------------------------------------------------------------------

    def fill_proto(self, cols: retrieval_pb2.CandidateColumns, user: retrieval_pb2.UserContext,
                   id_of: Callable[[np.ndarray], list[str]]) -> None:
        """Write into a response's columns and user context (in place: protobuf copies on
        assignment, and these are the largest fields of a request)."""
        cols.item_ids.extend(id_of(self.items))
        cols.retrieval_scores.extend(self.retrieval_score.tolist())
        cols.generators.extend(self.generators)
        cols.generator_scores.extend(self.scores.ravel().tolist())
        cols.generator_ranks.extend(self.ranks.ravel().tolist())
        cols.generator_affinities.extend(self.affinity.ravel().tolist())
        user.history_length = self.history_length
        user.recent_item_ids.extend(id_of(self.recent_items))
        user.segment = SEGMENTS.get(self.segment, common_pb2.USER_SEGMENT_UNSPECIFIED)
        user.last_timestamp = self.user_time

    @classmethod
    def from_proto(cls, cols: retrieval_pb2.CandidateColumns, user: retrieval_pb2.UserContext,
                   index_of: Callable[[Sequence[str]], np.ndarray],
                   default_time: int = 0) -> Candidates:
        """Read columns back; ``index_of`` maps external ids to indices (-1: unknown).

        Unknown recent items are dropped (they say nothing to a model that lacks them); an
        unknown candidate keeps -1 for the caller to resolve. Raises ContractError when the
        columns cannot be a candidate set.
        """
        check_columns(cols)
        n, g = len(cols.item_ids), len(cols.generators)
        items = np.asarray(index_of(cols.item_ids), dtype=np.int64)
        scores = np.asarray(cols.generator_scores, np.float32).reshape(n, g)
        ranks = np.asarray(cols.generator_ranks, np.int32).reshape(n, g)
        affinity = (np.asarray(cols.generator_affinities, np.float32).reshape(n, g)
                    if len(cols.generator_affinities) else np.full((n, g), np.nan, np.float32))
        # A non-proposing generator has no score, whatever the sender put there.
        scores[ranks == 0] = np.nan
        recent = np.asarray(index_of(user.recent_item_ids), dtype=np.int64)
        return cls(items, tuple(cols.generators), scores, ranks, affinity,
                   np.asarray(cols.retrieval_scores, np.float32),
                   SEGMENT_NAMES.get(user.segment, SEGMENT_ESTABLISHED),
                   int(user.history_length), recent[recent >= 0],
                   int(user.last_timestamp) or default_time)


def check_columns(cols: retrieval_pb2.CandidateColumns) -> None:
    """Raise ContractError unless every column has one entry per candidate (per generator)."""
    n = len(cols.item_ids)
    if len(cols.retrieval_scores) != n:
        raise ContractError(f"candidates.retrieval_scores has {len(cols.retrieval_scores)} "
                            f"entries for {n} candidates")
    if len(set(cols.generators)) != len(cols.generators):
        raise ContractError("candidates.generators repeats a name")
    cells = n * len(cols.generators)
    for name in ("generator_scores", "generator_ranks"):
        if len(getattr(cols, name)) != cells:
            raise ContractError(f"candidates.{name} has {len(getattr(cols, name))} entries, "
                                f"expected candidates x generators = {cells}")
    if len(cols.generator_affinities) not in (0, cells):
        raise ContractError(f"candidates.generator_affinities has "
                            f"{len(cols.generator_affinities)} entries, expected 0 or {cells}")
    if cells and min(cols.generator_ranks) < 0:
        raise ContractError("candidates.generator_ranks must be >= 0")
