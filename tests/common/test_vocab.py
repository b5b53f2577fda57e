"""Vocabulary: id <-> index maps, unknown ids, persistence without pickle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shortlist.common.vocab import UNKNOWN, Vocabulary

# numpy's fixed-width unicode arrays drop trailing NULs, so ids never contain "\x00"
# (real ids: MovieLens ids, UUIDs, SKUs).
_ids = st.lists(st.text(st.characters(blacklist_characters="\x00"), max_size=12), unique=True,
                max_size=40)


def test_basic_mapping():
    v = Vocabulary(["a", "b", 3])
    assert len(v) == 3
    assert v.index("b") == 1 and v.index("3") == 2 and v.index("zz") == UNKNOWN == -1
    assert "a" in v and "zz" not in v
    assert v.id(0) == "a" and v.ids([2, 0]) == ["3", "a"]
    np.testing.assert_array_equal(v.indices(["b", "nope", "a"]), [1, -1, 0])
    assert v.indices([]).dtype == np.int64 and len(v.indices([])) == 0
    assert v.all_ids == ["a", "b", "3"]


def test_all_ids_is_a_copy():
    v = Vocabulary(["a"])
    v.all_ids.append("b")
    assert len(v) == 1


def test_duplicates_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary(["a", "b", "a"])


def test_add_appends_only_new_ids():
    v = Vocabulary(["x"])
    assert v.add("y") == 1
    assert v.add("x") == 0
    assert v.add("y") == 1
    assert len(v) == 2 and v.id(1) == "y" and v.index("y") == 1


def test_from_values_first_seen_order():
    v, codes = Vocabulary.from_values(["b", "a", "b", 7, "a", "7"])
    assert v.all_ids == ["b", "a", "7"]
    np.testing.assert_array_equal(codes, [0, 1, 0, 2, 1, 2])


def test_empty_save_load(tmp_path):
    Vocabulary().save(tmp_path / "v.npy")
    assert len(Vocabulary.load(tmp_path / "v.npy")) == 0


def test_load_refuses_pickled_arrays(tmp_path):
    path = tmp_path / "v.npy"
    np.save(path, np.array(["a", None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        Vocabulary.load(path)


@settings(max_examples=100, deadline=None)
@given(ids=_ids)
def test_save_load_round_trip(tmp_path_factory, ids):
    path = tmp_path_factory.mktemp("vocab") / "v.npy"
    v = Vocabulary(ids)
    v.save(path)
    loaded = Vocabulary.load(path)
    assert loaded.all_ids == ids
    for i, ext in enumerate(ids):
        assert loaded.index(ext) == i


@settings(max_examples=200, deadline=None)
@given(ids=_ids, probes=st.lists(st.text(max_size=12), max_size=20))
def test_index_id_round_trip(ids, probes):
    v = Vocabulary(ids)
    for i in range(len(v)):
        assert v.index(v.id(i)) == i
    for ext in ids:
        assert v.id(v.index(ext)) == ext
    codes = v.indices(probes)
    for ext, code in zip(probes, codes.tolist(), strict=True):
        assert code == (ids.index(ext) if ext in ids else UNKNOWN)
    known = codes[codes >= 0]
    assert v.ids(known) == [p for p in probes if p in ids]


def _not_nul_ended(text: str) -> bool:
    return not text.endswith("\0")


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.sampled_from(["a", "b", "c", "d"])
                       | st.text(max_size=3).filter(_not_nul_ended), max_size=50))
def test_from_values_decodes_back(values):
    v, codes = Vocabulary.from_values(values)
    assert v.ids(codes) == values
    assert len(v) == len(set(values))


def test_an_id_ending_in_nul_is_refused_and_never_taken_for_another():
    """numpy's strings drop trailing NULs, so "a\0" would be saved, and found, as "a"."""
    with pytest.raises(ValueError, match="NUL"):
        Vocabulary(["a", "b\0"])
    with pytest.raises(ValueError, match="NUL"):
        Vocabulary.from_values(["a", "a\0"])
    v = Vocabulary(["a", "b"])
    assert v.index("a\0") == UNKNOWN and "a\0" not in v
    assert v.indices(["a\0", "a", "b"]).tolist() == [UNKNOWN, 0, 1]
    assert v.add("a\0") == 2 and v.index("a\0") == 2  # added while serving: kept exactly
    assert v.indices(["a\0", "a"]).tolist() == [2, 0]


def test_a_million_ids_are_held_as_one_array_and_found_by_binary_search():
    ids = [f"u{i}" for i in range(0, 2_000_000, 2)]
    v = Vocabulary(ids)
    assert v._base.dtype.kind == "U" and v._hashes.dtype == np.int64 and not v._added_index
    rng = np.random.default_rng(0)
    probe = rng.integers(0, 2_000_000, 1000)
    expected = [p // 2 if p % 2 == 0 else UNKNOWN for p in probe.tolist()]
    assert v.indices([f"u{p}" for p in probe.tolist()]).tolist() == expected
    assert [v.index(f"u{p}") for p in probe.tolist()] == expected
    assert v.ids([0, 999_999]) == ["u0", "u1999998"]


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.text(max_size=4).filter(_not_nul_ended), unique=True, max_size=30),
       probes=st.lists(st.text(max_size=4).filter(_not_nul_ended), max_size=20))
def test_lookups_stay_exact_when_every_hash_collides(ids, probes):
    """Ids are found through their hashes: with a hash that collides all the time (the
    length), every lookup must still find exactly its own id, and duplicates still fail."""
    from unittest import mock

    from shortlist.common import vocab as module

    with mock.patch.object(module, "hash", len, create=True):
        v = Vocabulary(ids)
        for ext in ids + probes:
            assert v.index(ext) == (ids.index(ext) if ext in ids else UNKNOWN)
        assert v.indices(ids + probes).tolist() == [
            ids.index(e) if e in ids else UNKNOWN for e in ids + probes]
        if ids:
            with pytest.raises(ValueError, match="duplicate"):
                Vocabulary([*ids, ids[-1]])
