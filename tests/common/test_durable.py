"""Replacing a file leaves the old contents or the new, and no temporary file behind."""

from __future__ import annotations

import os

import pytest

from shortlist.common.durable import replace_file


def test_replace_file_swaps_the_contents_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "pin.json"
    replace_file(target, b"old")
    replace_file(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pin.json"]


def test_a_failed_replace_keeps_the_old_contents(tmp_path, monkeypatch):
    target = tmp_path / "pin.json"
    replace_file(target, b"old")

    def refuse(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        replace_file(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pin.json"]  # temp removed
