"""Versioned artifact directories: atomic publish, manifest with checksums, verified load.

Layout: ``<root>/<version>/`` holds every model file plus ``manifest.json``. A version is
written into a hidden staging directory, the manifest is written last, and the directory is
renamed into place, so a reader never sees a half-written version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


class ArtifactError(Exception):
    """An artifact directory is missing, incomplete, corrupt or of an unknown schema."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Manifest:
    path: Path
    data: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.data["version"])

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.data.get("parameters", {}))


def new_version(fingerprint: str) -> str:
    """Sortable, unique-enough version name: UTC time plus the dataset fingerprint."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{stamp}-{fingerprint[:8]}"


@contextmanager
def publish(root: Path, version: str, manifest: dict[str, Any]) -> Iterator[Path]:
    """Yield a staging directory to fill; on success checksum it and move it into place.

    ``manifest`` is completed (schema, version, files) after the body has written its files,
    and the caller may keep mutating it (e.g. adding metrics) until the block ends.
    """
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-{version}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        yield staging
        files = {}
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            rel = path.relative_to(staging).as_posix()
            files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        body = {"schema_version": SCHEMA_VERSION, "version": version, **manifest, "files": files}
        tmp = staging / (MANIFEST + ".tmp")
        with open(tmp, "w") as fh:
            json.dump(body, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, staging / MANIFEST)
        final = root / version
        if final.exists():
            raise ArtifactError(f"version already exists: {final}")
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_manifest(version_dir: Path) -> Manifest:
    path = version_dir / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{version_dir}: no {MANIFEST} (incomplete or not a version)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest: {exc}") from exc
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ArtifactError(
            f"{path}: schema_version {data.get('schema_version')!r}, expected {SCHEMA_VERSION}"
        )
    return Manifest(version_dir, data)


def verify(version_dir: Path) -> Manifest:
    """Check every file against the manifest; raise naming the first bad file."""
    manifest = read_manifest(version_dir)
    for rel, meta in manifest.data.get("files", {}).items():
        path = version_dir / rel
        if not path.is_file():
            raise ArtifactError(f"{path}: listed in manifest but missing")
        if sha256_file(path) != meta["sha256"]:
            raise ArtifactError(f"{path}: checksum mismatch (corrupt or modified)")
    return manifest


def list_versions(root: Path) -> list[Path]:
    """Published version directories under ``root``, oldest first (names sort by time)."""
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
        and (p / MANIFEST).is_file()
    )


def resolve(root: Path, version: str = "") -> Path:
    """The version directory to serve: ``root`` itself if it is one, a pinned or the latest."""
    if (root / MANIFEST).is_file():
        return root
    if version:
        path = root / version
        if not (path / MANIFEST).is_file():
            raise ArtifactError(f"{path}: requested version not found")
        return path
    versions = list_versions(root)
    if not versions:
        raise ArtifactError(f"{root}: no published artifact version (run shortlist-train fit)")
    return versions[-1]


def write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)


def read_json(path: Path) -> Any:
    with open(path) as fh:
        return json.load(fh)
