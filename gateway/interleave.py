"""Team-draft interleaving (Radlinski, Kurup and Joachims, 2008): one list from two.

Each round, the arm that has contributed fewer items (a coin decides a tie) adds its best item
not yet taken. Every item is credited to the arm that added it, so a click is a vote for one
arm, and within one impression both arms had an equal chance at the top positions: a
comparison of two rankers that needs far fewer impressions than an A/B split, because each
user judges both lists at once.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence


def team_draft(a: Sequence[str], b: Sequence[str], k: int,
               seed: str = "") -> list[tuple[str, int]]:
    """Up to ``k`` (item, arm) pairs, arm 0 for ``a`` and 1 for ``b``; ``seed`` (the request
    id) makes the coin flips reproducible. Neither list may repeat an item.

    The order of each arm's items is kept, no item appears twice, and while both arms still
    have items, after every round the two have contributed equally many (a round is one pick
    of each); an arm that runs out leaves the rest to the other.
    """
    rng = random.Random(hashlib.blake2b(seed.encode(), digest_size=8).digest())
    lists = (list(a), list(b))
    nxt = [0, 0]
    counts = [0, 0]
    taken: set[str] = set()
    out: list[tuple[str, int]] = []

    def advance(arm: int) -> bool:
        items = lists[arm]
        while nxt[arm] < len(items) and items[nxt[arm]] in taken:
            nxt[arm] += 1
        return nxt[arm] < len(items)

    while len(out) < k:
        has = (advance(0), advance(1))
        if not any(has):
            break
        if not has[1]:
            arm = 0
        elif not has[0]:
            arm = 1
        elif counts[0] != counts[1]:
            arm = 0 if counts[0] < counts[1] else 1
        else:
            arm = rng.randrange(2)
        item = lists[arm][nxt[arm]]
        taken.add(item)
        out.append((item, arm))
        counts[arm] += 1
    return out
