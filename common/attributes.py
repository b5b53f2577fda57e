"""User attributes (age, gender, occupation, country...): one table aligned to a user vocabulary.

Values stay strings, as the data and the contract give them ("" where unknown); a model that
uses them decides what they mean (a category, a number to bucket) and saves that decision with
itself, so serving reads a request's ``user_attributes`` exactly as training read the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from shortlist.common.vocab import Vocabulary


@dataclass
class UserAttributes:
    columns: tuple[str, ...]
    values: np.ndarray  # str, (users, columns); "" where unknown

    @classmethod
    def align(cls, user_ids: Sequence[str], columns: Sequence[str],
              rows: Sequence[Sequence[str]], users: Vocabulary) -> UserAttributes:
        """The rows of ``user_ids`` in the order of ``users`` (users without a row: unknown;
        rows of users with no interaction are dropped: no index to give them)."""
        values = np.full((len(users), len(columns)), "", dtype=object)
        idx = users.indices(user_ids)
        for i, row in zip(idx.tolist(), rows, strict=True):
            if i >= 0:
                values[i] = [str(v).strip() for v in row]
        return cls(tuple(columns), values.astype(np.str_) if len(values) else
                   np.zeros((0, len(columns)), np.str_))

    def __len__(self) -> int:
        return len(self.values)

    def of(self, user: int) -> dict[str, str]:
        """The known attributes of user index ``user`` (none for an index beyond the table)."""
        if not 0 <= user < len(self.values):
            return {}
        return {c: v for c, v in zip(self.columns, self.values[user].tolist(), strict=True) if v}


@dataclass
class UserData:
    """What the data says about users besides their events, aligned to the user vocabulary:
    attributes, and social ties (``friends[u, f]``: how strongly ``u`` is tied to ``f``)."""

    attributes: UserAttributes | None = None
    friends: sp.csr_matrix | None = None


def merged(stored: Mapping[str, str], request: Mapping[str, str]) -> dict[str, str]:
    """What a request says overrides what was stored (the caller knows the user now)."""
    return {**stored, **{k: v for k, v in request.items() if v}}
