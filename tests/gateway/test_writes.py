"""The gateway's memory of each user's latest write (read your writes across replicas)."""

from __future__ import annotations

import time

import pytest

from shortlist.common.eventid import later
from shortlist.gateway.writes import RecentWrites


def test_the_latest_write_wins_whatever_order_they_are_remembered_in():
    writes = RecentWrites(max_users=10, ttl_s=60)
    writes.remember("u", "10-0")
    writes.remember("u", "9-5")  # an older write answered later
    assert writes.latest("u") == "10-0"
    writes.remember("u", "10-1")
    assert writes.latest("u") == "10-1" and writes.latest("other") == ""


def test_memory_is_bounded_and_entries_expire(monkeypatch):
    writes = RecentWrites(max_users=2, ttl_s=5)
    for n, user in enumerate("abc"):
        writes.remember(user, f"{n + 1}-0")
    assert [writes.latest(u) for u in "abc"] == ["", "2-0", "3-0"]  # the oldest user forgotten
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 6)
    assert writes.latest("c") == ""


def test_off_remembers_nothing():
    writes = RecentWrites(max_users=0, ttl_s=5)
    writes.remember("u", "1-0")
    assert writes.latest("u") == ""


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("", "", ""), ("1-0", "", "1-0"), ("", "2-0", "2-0"), ("10-0", "9-9", "10-0"),
    ("5-2", "5-10", "5-10")])
def test_later_compares_event_ids_as_numbers(a, b, expected):
    assert later(a, b) == expected
