"""Artifact versions: atomic publish, checksummed manifest, verify, resolve."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from shortlist.common import artifacts
from shortlist.common.artifacts import (
    MANIFEST,
    SCHEMA_VERSION,
    ArtifactError,
    list_versions,
    new_version,
    publish,
    read_json,
    read_manifest,
    resolve,
    verify,
    write_json,
)


def _publish(root: Path, version: str, files: dict[str, bytes] | None = None) -> Path:
    files = files if files is not None else {"a.bin": b"alpha", "sub/b.json": b"{}"}
    with publish(root, version, {"parameters": {"seed": 1}}) as staging:
        for rel, data in files.items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).write_bytes(data)
    return root / version


def test_publish_writes_manifest_last_with_checksums(tmp_path):
    root = tmp_path / "root"
    manifest = {"parameters": {"seed": 1}}
    with publish(root, "v1", manifest) as staging:
        assert staging.parent == root and staging.name.startswith(".")
        (staging / "model.bin").write_bytes(b"\x00\x01\x02" * 1000)
        (staging / "nested").mkdir()
        (staging / "nested" / "c.txt").write_text("hello")
        # Nothing is visible to readers while the body runs; no manifest exists yet.
        assert not (staging / MANIFEST).exists()
        assert list_versions(root) == []
        with pytest.raises(ArtifactError):
            resolve(root)
        manifest["metrics"] = {"recall": 0.5}  # may still be mutated inside the block
        (staging / "late.txt").write_text("written last by the body")
    version_dir = root / "v1"
    assert [p.name for p in root.iterdir()] == ["v1"]  # staging renamed away
    data = json.loads((version_dir / MANIFEST).read_text())
    assert data["schema_version"] == SCHEMA_VERSION and data["version"] == "v1"
    assert data["parameters"] == {"seed": 1} and data["metrics"] == {"recall": 0.5}
    on_disk = sorted(p.relative_to(version_dir).as_posix() for p in version_dir.rglob("*")
                     if p.is_file())
    assert on_disk == sorted([*data["files"], MANIFEST])
    for rel, meta in data["files"].items():
        raw = (version_dir / rel).read_bytes()
        assert meta == {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
    assert set(data["files"]) == {"model.bin", "nested/c.txt", "late.txt"}
    m = verify(version_dir)
    assert m.version == "v1" and m.parameters == {"seed": 1} and m.path == version_dir


def test_failed_publish_leaves_nothing(tmp_path):
    root = tmp_path / "root"
    with pytest.raises(RuntimeError), publish(root, "v1", {}) as staging:
        (staging / "x").write_text("partial")
        raise RuntimeError("training crashed")
    assert list(root.iterdir()) == []
    assert list_versions(root) == []


def test_publish_refuses_to_overwrite_a_version(tmp_path):
    _publish(tmp_path, "v1", {"a": b"1"})
    with pytest.raises(ArtifactError, match="already exists"):
        _publish(tmp_path, "v1", {"a": b"2"})
    assert (tmp_path / "v1" / "a").read_bytes() == b"1"
    assert [p.name for p in tmp_path.iterdir()] == ["v1"]


@pytest.mark.parametrize("rel", ["a.bin", "sub/b.json"])
def test_verify_names_the_corrupt_file(tmp_path, rel):
    version_dir = _publish(tmp_path, "v1")
    verify(version_dir)
    path = version_dir / rel
    raw = bytearray(path.read_bytes())
    raw[0] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match=re.escape(str(path))) as exc:
        verify(version_dir)
    assert "checksum" in str(exc.value)


def test_verify_missing_file(tmp_path):
    version_dir = _publish(tmp_path, "v1")
    (version_dir / "a.bin").unlink()
    with pytest.raises(ArtifactError, match="a.bin.*missing"):
        verify(version_dir)


def test_manifest_problems(tmp_path):
    version_dir = _publish(tmp_path, "v1")
    manifest = version_dir / MANIFEST
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ArtifactError, match="schema_version"):
        read_manifest(version_dir)
    manifest.write_text("{not json")
    with pytest.raises(ArtifactError, match="unreadable"):
        verify(version_dir)
    manifest.unlink()
    with pytest.raises(ArtifactError, match="no manifest"):
        verify(version_dir)


def test_resolve_latest_pinned_or_itself(tmp_path):
    root = tmp_path / "root"
    for v in ("20240101T000000Z-aaaa", "20250101T000000Z-bbbb", "20240601T000000Z-cccc"):
        _publish(root, v)
    assert resolve(root) == root / "20250101T000000Z-bbbb"
    assert resolve(root, "20240101T000000Z-aaaa") == root / "20240101T000000Z-aaaa"
    assert resolve(root / "20240601T000000Z-cccc") == root / "20240601T000000Z-cccc"
    # A version dir is served as is even when a version is named.
    assert resolve(root / "20240601T000000Z-cccc", "other") == root / "20240601T000000Z-cccc"
    with pytest.raises(ArtifactError, match="not found"):
        resolve(root, "20990101T000000Z-none")
    assert [p.name for p in list_versions(root)] == [
        "20240101T000000Z-aaaa", "20240601T000000Z-cccc", "20250101T000000Z-bbbb"]


def test_incomplete_dirs_are_ignored(tmp_path):
    root = tmp_path / "root"
    _publish(root, "20240101T000000Z-good")
    # A crashed trainer's staging dir and a manifest-less dir that sorts later.
    staging = root / ".staging-20990101T000000Z-x-123"
    staging.mkdir()
    (staging / "model.bin").write_bytes(b"half")
    (root / "20990101T000000Z-partial").mkdir()
    (root / "20990101T000000Z-partial" / "model.bin").write_bytes(b"half")
    (root / "stray-file.txt").write_text("not a dir")
    assert list_versions(root) == [root / "20240101T000000Z-good"]
    assert resolve(root) == root / "20240101T000000Z-good"
    with pytest.raises(ArtifactError):
        resolve(root, "20990101T000000Z-partial")


def test_resolve_empty_or_missing_root(tmp_path):
    assert list_versions(tmp_path / "missing") == []
    with pytest.raises(ArtifactError, match="no published"):
        resolve(tmp_path / "missing")
    with pytest.raises(ArtifactError, match="no published"):
        resolve(tmp_path)


def test_new_version_is_sortable_and_tagged():
    v = new_version("0123456789abcdef")
    assert re.fullmatch(r"\d{8}T\d{6}Z-01234567", v)


def test_json_helpers(tmp_path):
    write_json(tmp_path / "x.json", {"b": [1, 2], "a": "é"})
    assert read_json(tmp_path / "x.json") == {"a": "é", "b": [1, 2]}


def test_sha256_file_in_chunks(tmp_path):
    data = bytes(range(256)) * 100
    (tmp_path / "f").write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert artifacts.sha256_file(tmp_path / "f", chunk=1000) == expected
