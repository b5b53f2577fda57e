"""The shared request checks: each rule, its message, and Hypothesis for the id invariants."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shortlist.common import validation as v
from shortlist.common.errors import InvalidArgument, ServiceError
from shortlist.v1 import common_pb2

MAX_LEN, MAX_ITEMS = 8, 3


def test_the_error_is_invalid_argument():
    with pytest.raises(InvalidArgument) as err:
        v.check_id("user_id", "", MAX_LEN)
    assert isinstance(err.value, ServiceError) and err.value.status == "INVALID_ARGUMENT"


@pytest.mark.parametrize(("value", "message"), [
    ("", "user_id is empty"),
    ("x" * (MAX_LEN + 1), f"user_id longer than {MAX_LEN} characters"),
    ("u\x005", "user_id contains a NUL character"),
])
def test_check_id_refuses(value, message):
    with pytest.raises(InvalidArgument) as err:
        v.check_id("user_id", value, MAX_LEN)
    assert str(err.value) == message


@pytest.mark.parametrize("value", ["u", "x" * MAX_LEN, "🎬🍿", " ", "a/b"])
def test_check_id_accepts(value):
    assert v.check_id("user_id", value, MAX_LEN) == value


def test_check_ids_counts_then_checks_each():
    v.check_ids("recent_item_ids", [], MAX_ITEMS, MAX_LEN)
    v.check_ids("recent_item_ids", ["a"] * MAX_ITEMS, MAX_ITEMS, MAX_LEN)
    with pytest.raises(InvalidArgument, match=rf"^recent_item_ids has more than {MAX_ITEMS} "
                                              "entries$"):
        v.check_ids("recent_item_ids", ["a"] * (MAX_ITEMS + 1), MAX_ITEMS, MAX_LEN)
    with pytest.raises(InvalidArgument, match="^recent_item_ids is empty$"):
        v.check_ids("recent_item_ids", ["a", ""], MAX_ITEMS, MAX_LEN)


def test_check_count_only_counts():
    v.check_count("user.recent_item_ids", ["", "\x00"], MAX_ITEMS)
    with pytest.raises(InvalidArgument, match="user.recent_item_ids has more than 3 entries"):
        v.check_count("user.recent_item_ids", [""] * 4, MAX_ITEMS)


def test_check_filters_names_the_list():
    v.check_filters(common_pb2.Filters(exclude_item_ids=["i1"], include_categories=["Drama"]),
                    MAX_ITEMS, MAX_LEN)
    for name in v.FILTER_LISTS:
        with pytest.raises(InvalidArgument, match=f"^filters.{name} is empty$"):
            v.check_filters(common_pb2.Filters(**{name: [""]}), MAX_ITEMS, MAX_LEN)
        with pytest.raises(InvalidArgument, match=f"^filters.{name} has more than"):
            v.check_filters(common_pb2.Filters(**{name: ["a"] * 4}), MAX_ITEMS, MAX_LEN)


def test_check_text():
    assert v.check_text("text", "", 10) == ""
    assert v.check_text("title", " x ", 10, allow_empty=False) == " x "
    for blank in ("", " \t\n"):
        with pytest.raises(InvalidArgument, match="^query is empty$"):
            v.check_text("query", blank, 10, allow_empty=False)
    with pytest.raises(InvalidArgument, match="^query longer than 10 characters$"):
        v.check_text("query", "q" * 11, 10)
    with pytest.raises(InvalidArgument, match="^query contains a NUL character$"):
        v.check_text("query", "robot\x00", 10)


def test_check_k():
    assert v.check_k(0, 10, 100) == 10
    assert v.check_k(1, 10, 100) == 1
    assert v.check_k(100, 10, 100) == 100
    for k in (-1, 101, 2**31 - 1, -(2**31)):
        with pytest.raises(InvalidArgument, match=rf"^k must be in \[1, 100\], got {k}$"):
            v.check_k(k, 10, 100)


@pytest.mark.parametrize("name", ["20260101T000000Z-abc", "v1", "🎬", "a b", "é" * 127,
                                  "x" * v.MAX_VERSION_BYTES, "a..b"])
def test_version_names_accepted(name):
    assert v.check_version_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "../etc", ".hidden", "a/b", "/etc", "a\\b",
                                  "v\x00", "é" * 128, "x" * (v.MAX_VERSION_BYTES + 1),
                                  "\ud800", None, 5])
def test_version_names_refused(name):
    with pytest.raises(InvalidArgument, match="^not a version name: "):
        v.check_version_name(name)


def test_a_refused_version_name_is_echoed_briefly():
    with pytest.raises(InvalidArgument) as err:
        v.check_version_name("/" * 10_000)
    assert len(str(err.value)) < 100


# -- invariants -----------------------------------------------------------------------------

ids = st.text(max_size=2 * MAX_LEN)


@given(ids)
def test_an_id_passes_exactly_when_non_empty_short_and_nul_free(value):
    ok = bool(value) and len(value) <= MAX_LEN and "\x00" not in value
    try:
        v.check_id("item_id", value, MAX_LEN)
    except InvalidArgument as exc:
        assert not ok and str(exc).startswith("item_id ")
    else:
        assert ok


@given(st.lists(ids, max_size=2 * MAX_ITEMS))
def test_a_list_passes_exactly_when_short_and_every_id_passes(values):
    def passes(value: str) -> bool:
        return bool(value) and len(value) <= MAX_LEN and "\x00" not in value

    ok = len(values) <= MAX_ITEMS and all(passes(x) for x in values)
    try:
        v.check_ids("exclude_item_ids", values, MAX_ITEMS, MAX_LEN)
    except InvalidArgument as exc:
        assert not ok and str(exc).startswith("exclude_item_ids ")
    else:
        assert ok


@given(st.text(max_size=300))
def test_an_accepted_version_name_is_one_directory_name_inside_the_root(name):
    try:
        v.check_version_name(name)
    except InvalidArgument:
        return
    root = Path("/srv/artifacts")
    assert Path(name).name == name and (root / name).parent == root
    assert not name.startswith(".") and len(name.encode()) <= v.MAX_VERSION_BYTES


@given(st.integers(-(2**31), 2**31 - 1))
def test_k_is_the_default_or_in_range(k):
    try:
        got = v.check_k(k, 10, 100)
    except InvalidArgument:
        assert k < 0 or k > 100
    else:
        assert got == (k or 10) and 1 <= got <= 100
