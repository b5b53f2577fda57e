"""Event ids: where a write sits in the shared stream, "<ms>-<n>" as Redis assigns them.

The contract's ``event_id`` / ``after_event_id`` strings. Retrieval's shared backend orders
writes by them; the gateway compares them to pass on a user's latest write. Compare them
numerically (``StreamId``), never as strings: "10-0" follows "9-0".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")


@total_ordering
@dataclass(frozen=True, slots=True)
class StreamId:
    """A stream id, ordered as Redis orders them; ``StreamId.ZERO`` precedes every entry."""

    ms: int
    n: int

    @classmethod
    def parse(cls, text: str) -> StreamId:
        """Raises ValueError for anything but "<ms>-<n>" (a read-your-write token, say)."""
        m = _ID.match(text)
        if m is None:
            raise ValueError(f"not a stream id: {text[:64]!r} (expected <ms>-<n>)")
        return cls(int(m.group(1)), int(m.group(2)))

    def __lt__(self, other: StreamId) -> bool:
        return (self.ms, self.n) < (other.ms, other.n)

    def __str__(self) -> str:
        return f"{self.ms}-{self.n}"


StreamId.ZERO = StreamId(0, 0)


def later(a: str, b: str) -> str:
    """The later of two event ids, either possibly empty (no constraint)."""
    if not a or not b:
        return a or b
    return a if StreamId.parse(b) < StreamId.parse(a) else b
