"""Request checks shared by the servers: ids, id lists, free text, k, version names.

The gateway checks a request before it spends an upstream call on it, and retrieval checks the
same fields again because it is also called directly; ranking checks the ids it will learn and
the admin service the versions it will pin. One copy keeps their limits and messages in step.

Every check raises ``shortlist.common.errors.InvalidArgument`` (each package's
``InvalidRequest`` is one too), which the gRPC edge answers with INVALID_ARGUMENT: a bad request
is the caller's to fix, never an INTERNAL error. Messages name the field and the limit, and
never echo more than 64 characters of what the caller sent.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sized
from typing import Protocol

from shortlist.common.errors import InvalidArgument

# Longest version name: one directory name under the artifact root (NAME_MAX, in bytes).
MAX_VERSION_BYTES = 255
# How much of a caller's value a message repeats.
ECHO_CHARS = 64


class FilterLists(Protocol):
    """The lists of a ``shortlist.v1.Filters`` (anything with these attributes will do)."""

    exclude_item_ids: Collection[str]
    include_categories: Collection[str]
    exclude_categories: Collection[str]


FILTER_LISTS = ("exclude_item_ids", "include_categories", "exclude_categories")


def check_id(name: str, value: str, max_length: int) -> str:
    """A user or item id: non-empty, at most ``max_length`` characters, no NUL (ids end up in
    the event log and in saved vocabularies, where a NUL would truncate them)."""
    if not value:
        raise InvalidArgument(f"{name} is empty")
    return _bounded(name, value, max_length)


def _bounded(name: str, value: str, max_length: int) -> str:
    """At most ``max_length`` characters and no NUL: what every string checked here needs."""
    if len(value) > max_length:
        raise InvalidArgument(f"{name} longer than {max_length} characters")
    if "\x00" in value:
        raise InvalidArgument(f"{name} contains a NUL character")
    return value


def check_count(name: str, values: Sized, max_items: int) -> None:
    """At most ``max_items`` entries: every entry costs work (a lookup, a filter) per request."""
    if len(values) > max_items:
        raise InvalidArgument(f"{name} has more than {max_items} entries")


def check_ids(name: str, values: Collection[str], max_items: int, max_length: int) -> None:
    """A list of ids: at most ``max_items`` of them, each one a valid id (``check_id``)."""
    check_count(name, values, max_items)
    for value in values:
        check_id(name, value, max_length)


def check_attributes(name: str, values: Mapping[str, str], max_items: int,
                     max_length: int) -> dict[str, str]:
    """Attribute names and values: at most ``max_items`` pairs, names valid ids, values
    bounded (empty: unknown)."""
    check_count(name, values, max_items)
    for key, value in values.items():
        check_id(f"{name} name", key, max_length)
        _bounded(f"{name}[{key[:ECHO_CHARS]!r}]", value, max_length)
    return dict(values)


def check_filters(filters: FilterLists, max_items: int, max_length: int,
                  prefix: str = "filters.") -> None:
    """Each list of a ``Filters`` message is an id list (categories are ids too)."""
    for name in FILTER_LISTS:
        check_ids(f"{prefix}{name}", getattr(filters, name), max_items, max_length)


def check_text(name: str, value: str, max_length: int, allow_empty: bool = True) -> str:
    """Free text (a title, a query): bounded, no NUL; with ``allow_empty=False`` it must have
    a non-blank character, since a blank title or query has nothing to index or match."""
    if not allow_empty and not value.strip():
        raise InvalidArgument(f"{name} is empty")
    return _bounded(name, value, max_length)


def check_k(k: int, default: int, max_k: int) -> int:
    """The number of results wanted: 0 means ``default``, else it must be in [1, max_k]."""
    wanted = k or default
    if wanted < 0 or wanted > max_k:
        raise InvalidArgument(f"k must be in [1, {max_k}], got {k}")
    return wanted


def check_version_name(version: str) -> str:
    """A version is one plain directory name under the artifact root: not empty, not hidden
    (staging directories start with a dot), no path separator or NUL, encodable as a file
    name, at most ``MAX_VERSION_BYTES`` bytes. Anything else could name a path outside the
    root or one no filesystem can hold."""
    bad = InvalidArgument(f"not a version name: {str(version)[:ECHO_CHARS]!r}")
    if not isinstance(version, str) or not version or version.startswith("."):
        raise bad
    if any(c in version for c in "/\\\x00"):
        raise bad
    try:
        size = len(version.encode())
    except UnicodeEncodeError:  # a lone surrogate (from a JSON pin file): no file has it
        raise bad from None
    if size > MAX_VERSION_BYTES:
        raise bad
    return version
