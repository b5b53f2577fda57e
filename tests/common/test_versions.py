"""Version pinning and the hot-swap watcher, on tiny fake versions (no models, no gRPC)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from shortlist.common import versions
from shortlist.common.artifacts import MANIFEST, ArtifactError, publish
from shortlist.common.versions import (
    PIN_FILE,
    VersionWatcher,
    describe_versions,
    pin,
    pinned,
    target_version,
    unpin,
)

LOGGER = "shortlist.common.versions"


def _publish(root: Path, version: str, payload: Any = None) -> Path:
    manifest = {"created_at": f"created-{version}"}
    with publish(root, version, manifest) as staging:
        body = {"version": version, "payload": payload if payload is not None else [1, 2, 3]}
        (staging / "data.json").write_text(json.dumps(body))
    return root / version


def _corrupt(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def _load(directory: Path) -> dict[str, Any]:
    data = json.loads((directory / "data.json").read_text())
    data["complete"] = True
    return data


class Holder:
    """What a server does: the served object is one attribute, swapped by assignment."""

    def __init__(self) -> None:
        self.current: dict[str, Any] | None = None
        self.swaps: list[str] = []

    def on_swap(self, obj: dict[str, Any], version: str) -> None:
        self.current = obj
        self.swaps.append(version)


def _watcher(root: Path, holder: Holder, load=_load, **kw) -> VersionWatcher:
    return VersionWatcher(root, load, holder.on_swap, **kw)


def _wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def _records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


# --- pinning -------------------------------------------------------------------------------


def test_target_is_newest_unless_pinned(tmp_path):
    with pytest.raises(ArtifactError, match="no published"):
        target_version(tmp_path)
    _publish(tmp_path, "v1")
    _publish(tmp_path, "v2")
    assert target_version(tmp_path) == tmp_path / "v2"
    assert pinned(tmp_path) is None
    pin(tmp_path, "v1")
    assert pinned(tmp_path) == "v1"
    assert target_version(tmp_path) == tmp_path / "v1"
    data = json.loads((tmp_path / PIN_FILE).read_text())
    assert data["version"] == "v1" and data["pinned_at"].endswith("Z")
    # Written atomically: no temporary file left next to it; not mistaken for a version.
    assert sorted(p.name for p in tmp_path.iterdir()) == [PIN_FILE, "v1", "v2"]
    assert [p.name for p in versions.artifacts.list_versions(tmp_path)] == ["v1", "v2"]
    unpin(tmp_path)
    unpin(tmp_path)  # idempotent
    assert pinned(tmp_path) is None and target_version(tmp_path) == tmp_path / "v2"


def test_a_root_that_is_a_version_is_its_own_target(tmp_path):
    path = _publish(tmp_path, "v1")
    assert target_version(path) == path


def test_pin_refuses_missing_corrupt_and_odd_versions(tmp_path):
    _publish(tmp_path, "v1")
    bad = _publish(tmp_path, "v2")
    _corrupt(bad / "data.json")
    with pytest.raises(ArtifactError, match="not found"):
        pin(tmp_path, "v9")
    with pytest.raises(ArtifactError, match="data.json"):
        pin(tmp_path, "v2")
    for name in ("", "../v1", ".staging-v1", "a/b"):
        with pytest.raises(ArtifactError, match="invalid version"):
            pin(tmp_path, name)
    assert pinned(tmp_path) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1", "v2"]


def test_a_bad_pin_file_is_an_error_naming_it(tmp_path):
    _publish(tmp_path, "v1")
    for text in ("{not json", "[]", '{"version": ""}', '{"version": "../etc"}'):
        (tmp_path / PIN_FILE).write_text(text)
        with pytest.raises(ArtifactError, match=PIN_FILE):
            pinned(tmp_path)
    (tmp_path / PIN_FILE).write_text('{"version": "gone"}')
    with pytest.raises(ArtifactError, match="pinned version not found"):
        target_version(tmp_path)


def test_describe_versions(tmp_path):
    _publish(tmp_path, "v1")
    _publish(tmp_path, "v2")
    broken = tmp_path / "v3"
    broken.mkdir()
    (broken / MANIFEST).write_text("{truncated")
    pin(tmp_path, "v1")
    rows = describe_versions(tmp_path, serving="v2")
    assert rows == [
        {"version": "v1", "created_at": "created-v1", "serving": False, "pinned": True},
        {"version": "v2", "created_at": "created-v2", "serving": True, "pinned": False},
        {"version": "v3", "created_at": "", "serving": False, "pinned": False},
    ]
    (tmp_path / PIN_FILE).write_text("garbage")
    assert not any(r["pinned"] for r in describe_versions(tmp_path, serving=""))
    assert describe_versions(tmp_path / "missing", serving="") == []


# --- watcher -------------------------------------------------------------------------------


def test_check_now_without_start_picks_up_newest(tmp_path):
    holder = Holder()
    watcher = _watcher(tmp_path, holder)
    assert watcher.serving == "" and not watcher.running
    _publish(tmp_path, "v1")
    assert watcher.check_now() is True
    assert watcher.serving == "v1" and holder.current["version"] == "v1"
    assert watcher.last_error is None
    assert watcher.check_now() is False  # nothing new: no reload
    _publish(tmp_path, "v2")
    assert watcher.check_now() is True
    assert holder.swaps == ["v1", "v2"] and holder.current["version"] == "v2"


def test_nothing_published_yet_is_logged_once(tmp_path, caplog):
    holder = Holder()
    watcher = _watcher(tmp_path, holder)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(3):
            assert watcher.check_now() is False
    assert len(_records(caplog)) == 1 and "no published" in watcher.last_error
    _publish(tmp_path, "v1")
    assert watcher.check_now() is True and watcher.last_error is None


def test_pin_rolls_back_and_unpin_rolls_forward(tmp_path):
    holder = Holder()
    watcher = _watcher(tmp_path, holder)
    _publish(tmp_path, "v1")
    _publish(tmp_path, "v2")
    watcher.check_now()
    assert watcher.serving == "v2"
    pin(tmp_path, "v1")
    assert watcher.check_now() is True
    assert watcher.serving == "v1" and holder.current["version"] == "v1"
    _publish(tmp_path, "v3")
    assert watcher.check_now() is False and watcher.serving == "v1"  # the pin holds
    unpin(tmp_path)
    assert watcher.check_now() is True and watcher.serving == "v3"
    assert holder.swaps == ["v2", "v1", "v3"]


def test_the_servers_own_version_setting_overrides_the_pin_file(tmp_path):
    holder = Holder()
    _publish(tmp_path, "v1")
    _publish(tmp_path, "v2")
    _publish(tmp_path, "v3")
    pin(tmp_path, "v1")
    watcher = _watcher(tmp_path, holder, pinned_version="v2")
    watcher.check_now()
    assert watcher.serving == "v2"
    unpin(tmp_path)
    watcher.check_now()
    assert watcher.serving == "v2"


def test_corrupt_version_refused_once_old_keeps_serving(tmp_path, caplog):
    holder = Holder()
    watcher = _watcher(tmp_path, holder)
    _publish(tmp_path, "v1")
    watcher.check_now()
    bad = _publish(tmp_path, "v2")
    original = (bad / "data.json").read_bytes()
    _corrupt(bad / "data.json")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert watcher.check_now() is False
        for _ in range(5):
            assert watcher.check_now() is False
    [record] = _records(caplog)
    message = record.getMessage()
    assert "v2" in message and "data.json" in message and "still serving v1" in message
    assert watcher.serving == "v1" and holder.current["version"] == "v1"
    assert holder.swaps == ["v1"]
    assert "v2" in watcher.last_error and "data.json" in watcher.last_error

    # Repaired in place, the version is retried only once its manifest changes.
    (bad / "data.json").write_bytes(original)
    assert watcher.check_now() is False
    assert watcher.check_now(force=True) is True and watcher.serving == "v2"
    assert watcher.last_error is None


def test_refused_version_is_retried_when_its_manifest_changes(tmp_path, caplog):
    holder = Holder()
    watcher = _watcher(tmp_path, holder)
    _publish(tmp_path, "v1")
    watcher.check_now()
    bad = _publish(tmp_path, "v2")
    original = (bad / "data.json").read_bytes()
    _corrupt(bad / "data.json")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        watcher.check_now()
        watcher.check_now()
        assert len(_records(caplog)) == 1
        stat = (bad / MANIFEST).stat()
        os.utime(bad / MANIFEST, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert watcher.check_now() is False  # still bad: tried (and logged) once more
        assert len(_records(caplog)) == 2
        (bad / "data.json").write_bytes(original)
        os.utime(bad / MANIFEST, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
        assert watcher.check_now() is True and watcher.serving == "v2"


def test_a_later_good_version_is_still_picked_up(tmp_path, caplog):
    holder = Holder()
    watcher = _watcher(tmp_path, holder)
    _publish(tmp_path, "v1")
    watcher.check_now()
    _corrupt(_publish(tmp_path, "v2") / "data.json")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        watcher.check_now()
        _publish(tmp_path, "v3")
        assert watcher.check_now() is True
    assert watcher.serving == "v3" and holder.swaps == ["v1", "v3"]
    assert len(_records(caplog)) == 1 and watcher.last_error is None


def test_incomplete_versions_are_ignored(tmp_path, caplog):
    holder = Holder()
    watcher = _watcher(tmp_path, holder)
    _publish(tmp_path, "v1")
    watcher.check_now()
    # A crashed publish's staging dir, and a directory without a manifest (half copied).
    staging = tmp_path / ".staging-v8-12345"
    staging.mkdir()
    (staging / "data.json").write_text('{"version": "v8"}')
    (tmp_path / "v9").mkdir()
    (tmp_path / "v9" / "data.json").write_text('{"version": "v9"}')
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert watcher.check_now() is False
        # A publish in progress is invisible until its rename.
        with publish(tmp_path, "v7", {}) as staging:
            (staging / "data.json").write_text('{"version": "v7"}')
            assert watcher.check_now() is False
    assert watcher.serving == "v1" and watcher.last_error is None
    assert _records(caplog) == []
    assert watcher.check_now() is True and watcher.serving == "v7"


def test_a_bad_pin_file_keeps_the_old_version_serving(tmp_path, caplog):
    holder = Holder()
    watcher = _watcher(tmp_path, holder)
    _publish(tmp_path, "v1")
    watcher.check_now()
    (tmp_path / PIN_FILE).write_text("{oops")
    _publish(tmp_path, "v2")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(3):
            assert watcher.check_now() is False
    [record] = _records(caplog)
    assert PIN_FILE in record.getMessage() and watcher.serving == "v1"
    unpin(tmp_path)
    assert watcher.check_now() is True and watcher.serving == "v2"


def test_thread_survives_a_load_that_raises(tmp_path, caplog):
    holder = Holder()
    calls: list[str] = []

    def flaky(directory: Path) -> dict[str, Any]:
        calls.append(directory.name)
        if directory.name == "v2":
            raise RuntimeError("boom while loading")
        return _load(directory)

    _publish(tmp_path, "v1")
    watcher = _watcher(tmp_path, holder, load=flaky, interval_s=0.01)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        watcher.start()
        try:
            _wait_for(lambda: watcher.serving == "v1")
            _publish(tmp_path, "v2")
            _wait_for(lambda: watcher.last_error is not None)
            time.sleep(0.1)  # several polls: v2 is not retried
            assert watcher.running and calls.count("v2") == 1
            assert "boom while loading" in watcher.last_error
            _publish(tmp_path, "v3")
            _wait_for(lambda: watcher.serving == "v3")
            assert watcher.running
        finally:
            watcher.stop()
    assert not watcher.running
    [record] = _records(caplog)
    assert "v2" in record.getMessage() and "boom while loading" in record.getMessage()
    assert holder.swaps == ["v1", "v3"]


def test_thread_survives_an_on_swap_that_raises(tmp_path):
    swapped: list[str] = []

    def on_swap(obj: dict[str, Any], version: str) -> None:
        if version == "v1":
            raise ValueError("cannot install")
        swapped.append(version)

    _publish(tmp_path, "v1")
    watcher = VersionWatcher(tmp_path, _load, on_swap, interval_s=0.01)
    watcher.start()
    try:
        _wait_for(lambda: watcher.last_error is not None)
        assert watcher.serving == "" and "cannot install" in watcher.last_error
        _publish(tmp_path, "v2")
        _wait_for(lambda: watcher.serving == "v2")
    finally:
        watcher.stop()
    assert swapped == ["v2"]


def test_readers_only_ever_see_fully_loaded_objects_moving_forward(tmp_path):
    holder = Holder()

    def slow_load(directory: Path) -> dict[str, Any]:
        data = json.loads((directory / "data.json").read_text())
        obj: dict[str, Any] = {"version": data["version"]}
        for i, value in enumerate(data["payload"]):  # built bit by bit, like a real load
            obj[f"part{i}"] = value
            time.sleep(0.001)
        obj["complete"] = True
        return obj

    _publish(tmp_path, "v000", payload=list(range(10)))
    watcher = _watcher(tmp_path, holder, load=slow_load, interval_s=0.005)
    assert watcher.check_now()
    stop = threading.Event()
    problems: list[str] = []
    latest = ["" for _ in range(4)]

    def reader(slot: int) -> None:
        last = -1
        while not stop.is_set():
            obj = holder.current
            if obj is None or not obj.get("complete") or "part9" not in obj:
                problems.append(f"incomplete object: {obj!r}")
                return
            number = int(obj["version"][1:])
            if number < last:
                problems.append(f"went backwards: {last} -> {number}")
                return
            last = number
            latest[slot] = obj["version"]
            time.sleep(0)  # yield the GIL now and then so the loader is not starved

    readers = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for t in readers:
        t.start()
    watcher.start()
    try:
        for n in range(1, 6):
            _publish(tmp_path, f"v{n:03d}", payload=list(range(10)))
            time.sleep(0.03)
        _wait_for(lambda: watcher.serving == "v005")
        _wait_for(lambda: problems or latest == ["v005"] * 4)
    finally:
        stop.set()
        for t in readers:
            t.join(5)
        watcher.stop()
    assert problems == []
    numbers = [int(v[1:]) for v in holder.swaps]
    assert numbers == sorted(numbers) and numbers[-1] == 5
    assert watcher.last_error is None


def test_start_is_idempotent_and_stop_joins(tmp_path):
    _publish(tmp_path, "v1")
    holder = Holder()
    watcher = _watcher(tmp_path, holder, interval_s=0.01)
    watcher.start()
    first = watcher._thread
    watcher.start()
    assert watcher._thread is first
    _wait_for(lambda: watcher.serving == "v1")
    watcher.stop()
    assert not watcher.running
    watcher.stop()  # twice is fine
