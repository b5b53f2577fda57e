"""Fold the retrieval server's event log (``retrieval.eventlog``) into a training dataset.

Interactions are appended to the dataset's (external ids, weight, timestamp as logged; a
(user, item) pair seen before is collapsed to its latest event by ``training.split.encode``).
Item upserts update the catalog: the last logged state of an item wins, items new to the
catalog are appended in order of first appearance, and an interacted item that neither the
dataset nor the log describes gets a catalog row titled by its id, as the loaders do.

The log is read interactions first, then items, each as one seq-ordered pass while the server
may still be appending. Each pass yields every record up to the highest seq it returns (seqs
commit in order, see ``retrieval.eventlog``), so ``extra["events"]`` records exactly what was
folded in: ``interactions_through`` / ``items_through`` are the highest seqs read (0 if none),
and a server replaying only newer seqs neither misses nor repeats an event. Reading items
after interactions means an item upserted just before its first interaction is normally
included with its real title.

Event types. A logged interaction keeps its type ("dislike", "purchase", ...; "" untyped).
When the log or the base dataset has any type, the result types every row (``event_codes``
into ``event_names``; a base row without one is ""), so training weighs a logged dislike as
the server did. When neither has one, ``event_codes`` stays None and the fingerprint is what
it was before types existed: untyped data trains exactly as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from itertools import chain
from pathlib import Path

import numpy as np

from shortlist.common.eventid import StreamId
from shortlist.common.events import UNTYPED, UnknownEventType, check_name
from shortlist.retrieval.eventlog import EventLog, EventLogError, Interaction
from shortlist.training.datasets import Dataset, DatasetError, Items

logger = logging.getLogger(__name__)


def is_stream(source: str | Path) -> bool:
    """Whether ``source`` names the shared Redis stream rather than an SQLite event log."""
    return str(source).startswith(("redis://", "rediss://", "unix://"))


def read_stream(source: str) -> tuple[list, list, dict]:
    """Interactions, item upserts and the manifest's ``events`` block from the shared stream
    ``redis://HOST:PORT/DB[#STREAM]`` (default stream ``shortlist:events``).

    Read through the id that was last when reading began: retrieval replicas replay only the
    entries after ``stream_through``, so nothing is folded in twice or missed. A compacted
    stream (``training.stream_archive``) is read from its archive up to the marker, then from
    Redis after it; an archive that cannot be read is an error, never a silent gap.
    """
    from shortlist.retrieval.stream import StreamError, StreamLog
    from shortlist.training.stream_archive import ArchiveError, archived_entries

    log = StreamLog.from_source(source)
    events: dict = {"stream": f"{log.where}#{log.stream}"}
    try:
        through = log.last_id()
        marker = log.archive_marker()
        start = StreamId.parse(marker["through"]) if marker else StreamId.ZERO
        records = log.entries(after=start, through=through)
        if marker:
            records = chain(archived_entries(Path(marker["archive"]), log.stream, start),
                            records)
            events.update(archive=marker["archive"], archive_through=str(start))
        interactions, items = [], []
        for _, record in records:
            (interactions if isinstance(record, Interaction) else items).append(record)
    except StreamError as exc:
        raise DatasetError(f"event stream {log.where}: {exc}") from exc
    except ArchiveError as exc:
        raise DatasetError(f"event stream {log.where}: its archive: {exc}") from exc
    finally:
        log.close()
    return interactions, items, {**events, "stream_through": str(through)}


def extend_dataset(ds: Dataset, log_path: Path | str) -> Dataset:
    """A new dataset: ``ds`` plus the logged interactions and item upserts (``ds`` untouched).

    ``log_path``: the embedded SQLite log, or the shared stream (``redis://...``, see
    ``read_stream``). ``fingerprint`` covers the base fingerprint and every record read (an
    empty log leaves it unchanged: the training data is the same); ``extra["events"]`` holds
    ``path`` (absolute), ``interactions_through`` and ``items_through`` for the log, or
    ``stream`` and ``stream_through`` for the stream.
    """
    if is_stream(log_path):
        interactions, item_records, events = read_stream(str(log_path))
    else:
        path = Path(log_path).expanduser()
        if not path.is_file():
            raise DatasetError(f"event log {path} not found")
        try:
            with EventLog(path) as log:
                interactions = list(log.interactions())
                item_records = list(log.items())
        except (sqlite3.DatabaseError, EventLogError) as exc:
            raise DatasetError(f"event log {path}: {exc}") from exc
        events = {"path": str(path.resolve()),
                  "interactions_through": max((r.seq for r in interactions), default=0),
                  "items_through": max((r.seq for r in item_records), default=0)}

    catalog = Items(list(ds.items.item_ids), list(ds.items.titles),
                    [list(c) for c in ds.items.categories], list(ds.items.texts))
    index = {item: i for i, item in enumerate(catalog.item_ids)}
    for rec in item_records:
        i = index.get(rec.item_id)
        if i is None:
            index[rec.item_id] = len(catalog.item_ids)
            catalog.item_ids.append(rec.item_id)
            catalog.titles.append(rec.title)
            catalog.categories.append(list(rec.categories))
            catalog.texts.append(rec.text)
        else:
            catalog.titles[i] = rec.title
            catalog.categories[i] = list(rec.categories)
            catalog.texts[i] = rec.text
    for rec in interactions:
        if rec.item_id not in index:
            index[rec.item_id] = len(catalog.item_ids)
            catalog.item_ids.append(rec.item_id)
            catalog.titles.append(rec.item_id)
            catalog.categories.append([])
            catalog.texts.append("")

    event_codes, event_names = _event_codes(ds, interactions)
    digest = hashlib.sha256(ds.fingerprint.encode())
    for rec in interactions:
        # The type only when there is one: an untyped record hashes as it did before types.
        digest.update(b"\ni" + json.dumps(
            [rec.seq, rec.user_id, rec.item_id, rec.weight, rec.timestamp]
            + ([rec.event] if rec.event else [])).encode())
    for rec in item_records:
        digest.update(b"\nc" + json.dumps(
            [rec.seq, rec.item_id, rec.title, rec.categories, rec.text]).encode())
    fingerprint = digest.hexdigest() if interactions or item_records else ds.fingerprint

    logger.info("event log folded in", extra={"fields": {
        **events, "interactions": len(interactions), "item_upserts": len(item_records)}})
    user_codes, user_values = _append_ids(ds.user_codes, ds.user_values,
                                          [r.user_id for r in interactions])
    item_codes, item_values = _append_ids(ds.item_codes, ds.item_values,
                                          [r.item_id for r in interactions])
    return Dataset(
        name=ds.name,
        user_codes=user_codes, user_values=user_values,
        item_codes=item_codes, item_values=item_values,
        weights=np.concatenate([ds.weights, np.asarray(
            [r.weight for r in interactions], dtype=np.float32)]),
        timestamps=np.concatenate([ds.timestamps, np.asarray(
            [r.timestamp for r in interactions], dtype=np.int64)]),
        items=catalog,
        has_timestamps=ds.has_timestamps,
        fingerprint=fingerprint,
        extra={**ds.extra, "events": events},
        users=ds.users,
        social=ds.social,
        event_codes=event_codes,
        event_names=event_names,
    )


def _event_codes(ds: Dataset, interactions: list[Interaction]
                 ) -> tuple[np.ndarray | None, list[str]]:
    """Codes and names for the base rows then the logged ones; (None, []) when neither names
    a type, so untyped data stays untyped. A malformed logged type is a DatasetError (the
    server never logs one; a log written by other means might)."""
    if ds.event_codes is None and not any(rec.event for rec in interactions):
        return None, []
    if ds.event_codes is None:
        names, base = [UNTYPED], np.zeros(len(ds.weights), dtype=np.int16)
    else:
        names, base = list(ds.event_names), np.asarray(ds.event_codes, dtype=np.int16)
    index = {name: i for i, name in enumerate(names)}
    logged = []
    for rec in interactions:
        try:
            name = check_name(rec.event)
        except UnknownEventType as exc:
            raise DatasetError(f"event log record {rec.seq}: {exc}") from exc
        logged.append(index.setdefault(name, len(index)))
    if len(index) > np.iinfo(np.int16).max:
        raise DatasetError(f"{len(index)} event types: more than int16 codes can hold")
    return np.concatenate([base, np.asarray(logged, dtype=np.int16)]), list(index)


def _append_ids(codes: np.ndarray, values: list[str],
                new: list[str]) -> tuple[np.ndarray, list[str]]:
    """Dictionary-encoded ids with ``new`` rows appended (new distinct values at the end)."""
    index = {v: i for i, v in enumerate(values)}
    extra = np.fromiter((index.setdefault(v, len(index)) for v in new), dtype=np.int64,
                        count=len(new))
    return np.concatenate([codes, extra]), list(index)
