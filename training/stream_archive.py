"""Compacting the shared stream: entries no serving version needs move to files, then leave Redis.

Training folds the *whole* stream into the data (``eventlog_data.read_stream``), so trimming
the stream alone would drop acknowledged events from every later fit. Compaction therefore
archives before it trims, in an order where a crash at any step loses nothing:

1. entries after the archive's end, through the safe point, are written to a new segment
   file (JSON lines of the stream's own fields, synced, with its SHA-256), then
   ``archive.json`` is replaced atomically;
2. the marker ``<stream>:archive`` in Redis (AOF-synced) is set to the new end;
3. the stream is trimmed through it.

Readers trust the marker: archived entries up to it, then the stream after it. A crash after
(1) leaves a longer archive than the marker says (the extra entries are still in the stream and
are read from there); after (2), an untrimmed stream (entries up to the marker are skipped).

The safe point is the oldest ``stream_through`` among the artifact root's versions: a replica
serving a version replays the stream after that id, so those entries must stay. A version
trained without the stream (no ``stream_through``) pins the whole stream.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from shortlist.common import artifacts
from shortlist.common.durable import replace_file
from shortlist.common.eventid import StreamId
from shortlist.retrieval.stream import StreamLog, record_from_fields

logger = logging.getLogger(__name__)

INDEX = "archive.json"


class ArchiveError(Exception):
    """The archive is missing, corrupt, or belongs to another stream."""


def read_index(archive: Path, stream: str) -> dict:
    """The archive's index (an empty one for a new directory)."""
    path = archive / INDEX
    if not path.is_file():
        return {"stream": stream, "through": str(StreamId.ZERO), "segments": []}
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArchiveError(f"{path}: unreadable: {exc}") from exc
    if index.get("stream") != stream:
        raise ArchiveError(f"{path}: archive of stream {index.get('stream')!r}, not {stream!r}")
    return index


def safe_point(root: Path) -> tuple[StreamId, str]:
    """The oldest ``stream_through`` of the published versions under ``root`` (ZERO when a
    version has none) and the version that sets it; ArchiveError when there is no version."""
    versions = artifacts.list_versions(root)
    if not versions:
        raise ArchiveError(f"{root}: no published version: nothing says which entries are "
                           "no longer needed")
    points = []
    for v in versions:
        events = artifacts.read_manifest(v).data.get("events") or {}
        points.append((StreamId.parse(events.get("stream_through") or str(StreamId.ZERO)),
                       v.name))
    return min(points)


def compact(log: StreamLog, archive: Path, through: StreamId) -> dict:
    """Archive the entries after the marker through ``through``, then trim them from the
    stream; a summary of what was done. Idempotent: a second call finishes an interrupted one.
    """
    archive.mkdir(parents=True, exist_ok=True)
    index = read_index(archive, log.stream)
    marker = log.archive_marker()
    if marker is not None and Path(marker["archive"]).resolve() != archive.resolve():
        raise ArchiveError(f"stream {log.stream} is archived in {marker['archive']}, not "
                           f"{archive}: compact into that directory")
    marked = StreamId.parse(marker["through"]) if marker else StreamId.ZERO
    archived = StreamId.parse(index["through"])
    if archived < marked:
        raise ArchiveError(f"{archive / INDEX} ends at {archived} but the stream's marker "
                           f"says {marked} was archived: this is not that archive")
    written = 0
    if archived < through:
        name = f"segment-{len(index['segments']):06d}.jsonl"
        first = last = None
        lines = []
        for entry_id, fields in log.raw_entries(archived, through):
            line = json.dumps({"id": str(entry_id), "f": fields}, sort_keys=True) + "\n"
            lines.append(line.encode())
            first = entry_id if first is None else first
            last = entry_id
        if lines:
            data = b"".join(lines)
            replace_file(archive / name, data)
            index["segments"].append({"file": name, "first": str(first), "last": str(last),
                                      "entries": len(lines),
                                      "sha256": hashlib.sha256(data).hexdigest()})
            written = len(lines)
        index["through"] = str(through)
        replace_file(archive / INDEX, json.dumps(index, indent=1).encode())
        archived = through
    end = through if marked < through else marked  # the archive holds through it now
    if marked < end:
        log.set_archive_marker(str(archive.resolve()), end)
    trimmed = log.trim_through(end) if StreamId.ZERO < end else 0
    summary = {"stream": log.stream, "archive": str(archive), "through": str(end),
               "archived_now": written, "trimmed_now": trimmed, "stream_length": log.length()}
    logger.info("stream compacted", extra={"fields": summary})
    return summary


def archived_entries(archive: Path, stream: str, through: StreamId
                     ) -> Iterator[tuple[StreamId, object]]:
    """The archived records up to ``through`` (the marker), in stream order, each segment
    checked against its checksum first."""
    index = read_index(archive, stream)
    if StreamId.parse(index["through"]) < through:
        raise ArchiveError(f"{archive / INDEX} ends at {index['through']}, before the "
                           f"stream's marker {through}: entries are missing")
    for seg in index["segments"]:
        path = archive / seg["file"]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ArchiveError(f"{path}: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != seg["sha256"]:
            raise ArchiveError(f"{path}: checksum mismatch (corrupt or modified)")
        for line in data.splitlines():
            row = json.loads(line)
            entry_id = StreamId.parse(row["id"])
            if through < entry_id:
                return
            yield entry_id, record_from_fields(row["id"], row["f"])
