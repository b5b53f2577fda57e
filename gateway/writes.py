"""Each user's latest write, so that the next Recommend reflects it on any retrieval replica.

With the shared state backend a write is acknowledged once Redis has it; a retrieval replica
other than the writer applies it a moment later. The gateway remembers the event id of the
latest write it forwarded for each user and sends it with that user's next Retrieve
(``after_event_id``): a replica that has not applied it waits briefly or refuses, and the call
moves to one that has. Entries are needed only for that moment, so they expire after ``ttl_s``
and the least recently written users are forgotten beyond ``max_users``: memory stays bounded
whatever the traffic. A caller spreading one user's calls over several gateways passes the id
itself (``RecommendRequest.after_event_id``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from shortlist.common.eventid import later


class RecentWrites:
    def __init__(self, max_users: int, ttl_s: float) -> None:
        self.max_users = max_users
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._latest: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def remember(self, user_id: str, event_id: str) -> None:
        if not event_id or self.max_users <= 0:
            return
        now = time.monotonic()
        with self._lock:
            known = self._latest.pop(user_id, None)
            if known is not None:
                event_id = later(known[0], event_id)
            self._latest[user_id] = (event_id, now)
            while len(self._latest) > self.max_users:
                self._latest.popitem(last=False)

    def latest(self, user_id: str) -> str:
        """The user's latest remembered event id, or "" (none, or expired)."""
        with self._lock:
            known = self._latest.get(user_id)
            if known is None:
                return ""
            if time.monotonic() - known[1] > self.ttl_s:
                del self._latest[user_id]
                return ""
            return known[0]
