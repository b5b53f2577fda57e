"""Compacting the shared stream on a real ``redis-server``: archived entries stay in the
training data, trimming follows archiving, an interrupted compaction loses nothing, and a
replica whose version predates the archive refuses to replay a stream with a hole in it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from shortlist.common import artifacts
from shortlist.common.eventid import StreamId
from shortlist.retrieval.eventlog import interaction_entry, item_entry
from shortlist.retrieval.stream import StreamError, StreamLog
from shortlist.training.datasets import DatasetError
from shortlist.training.eventlog_data import read_stream
from shortlist.training.stream_archive import compact, safe_point

T0 = 1_700_000_000


def publish(root: Path, name: str, through: str | None) -> None:
    with artifacts.publish(root, name, {"events": {"stream_through": through}} if through
                           else {}):
        pass


def fill(log: StreamLog, n: int, start: int = 0) -> list[str]:
    ids = [log.append(interaction_entry(f"u{i % 3}", f"i{i}", 1.0 + i, T0 + i))[0]
           for i in range(start, start + n)]
    ids.append(log.append(item_entry(f"new{start}", "A title", ["Drama"], "text"))[0])
    return ids


def content(url: str) -> tuple[list, list]:
    interactions, items, _ = read_stream(url)
    return ([(r.seq, r.user_id, r.item_id, r.weight, r.timestamp) for r in interactions],
            [(r.seq, r.item_id, r.title, r.categories) for r in items])


def test_compaction_archives_then_trims_and_training_still_reads_every_entry(
        redis_server, tmp_path):
    log = StreamLog(redis_server.url)
    ids = fill(log, 10)  # 10 interactions and an item upsert
    before = content(redis_server.url)
    root, archive = tmp_path / "artifacts", tmp_path / "archive"
    publish(root, "v1", ids[3])
    publish(root, "v2", ids[7])
    assert safe_point(root) == (StreamId.parse(ids[3]), "v1")  # v1's replicas replay after it

    done = compact(log, archive, safe_point(root)[0])
    assert (done["archived_now"], done["trimmed_now"], done["stream_length"]) == (4, 4, 7)
    assert content(redis_server.url) == before
    _, _, events = read_stream(redis_server.url)
    assert events["archive_through"] == ids[3] and events["stream_through"] == ids[-1]
    assert compact(log, archive, safe_point(root)[0])["archived_now"] == 0  # idempotent

    shutil.rmtree(root / "v1")
    publish(root, "v3", ids[-1])  # a fit through the last entry; v2 still pins ids[7]
    assert compact(log, archive, safe_point(root)[0])["trimmed_now"] == 4
    shutil.rmtree(root / "v2")
    done = compact(log, archive, safe_point(root)[0])  # everything: the stream is empty
    assert (done["stream_length"], done["through"]) == (0, ids[-1])
    assert content(redis_server.url) == before
    assert read_stream(redis_server.url)[2]["stream_through"] == ids[-1]  # not ZERO
    later = fill(log, 2, start=100)
    got = content(redis_server.url)
    assert [r[0] for r in got[0]][-2:] == later[:2] and len(got[0]) == 12
    index = json.loads((archive / "archive.json").read_text())
    assert [s["entries"] for s in index["segments"]] == [4, 4, 3]
    log.close()


def test_an_interrupted_compaction_loses_nothing_and_the_next_one_finishes(
        redis_server, tmp_path, monkeypatch):
    log = StreamLog(redis_server.url)
    ids = fill(log, 6)
    before = content(redis_server.url)
    archive = tmp_path / "archive"

    def down(*_args, **_kwargs):
        raise StreamError("redis went away")

    for step in ("set_archive_marker", "trim_through"):  # archived, not marked; not trimmed
        with monkeypatch.context() as m:
            m.setattr(log, step, down)
            with pytest.raises(StreamError):
                compact(log, archive, StreamId.parse(ids[4]))
        assert log.length() == 7 and content(redis_server.url) == before
    done = compact(log, archive, StreamId.parse(ids[4]))
    assert (done["archived_now"], done["trimmed_now"], done["stream_length"]) == (0, 5, 2)
    assert content(redis_server.url) == before
    log.close()


def test_a_damaged_or_missing_archive_is_an_error_not_a_gap(redis_server, tmp_path):
    log = StreamLog(redis_server.url)
    ids = fill(log, 4)
    archive = tmp_path / "archive"
    compact(log, archive, StreamId.parse(ids[2]))
    segment = archive / "segment-000000.jsonl"
    segment.write_text(segment.read_text().replace("u1", "u2"))
    with pytest.raises(DatasetError, match="checksum mismatch"):
        read_stream(redis_server.url)
    shutil.rmtree(archive)
    with pytest.raises(DatasetError, match="archive"):
        read_stream(redis_server.url)
    log.close()


def test_a_replica_whose_version_predates_the_archive_refuses_to_start(
        redis_server, tmp_path, trained):
    from shortlist.retrieval.bundle import RetrievalModels
    from shortlist.retrieval.errors import StateUnavailable
    from shortlist.retrieval.retriever import Retriever
    from shortlist.retrieval.shared import SharedState

    log = StreamLog(redis_server.url)
    ids = fill(log, 3)
    compact(log, tmp_path / "archive", StreamId.parse(ids[1]))
    version_dir = artifacts.resolve(trained)
    retriever = Retriever(RetrievalModels.load(version_dir), "old", 2000)
    state = SharedState(StreamLog(redis_server.url, timeout_s=0.5))
    with pytest.raises(StateUnavailable, match="compacted through"):
        state.prepare(retriever, {"stream_through": ids[0]})
    state.prepare(retriever, {"stream_through": ids[1]})  # trained through the archive: fine
    log.close()


def test_the_command_compacts_to_the_artifact_roots_safe_point(redis_server, tmp_path, capsys):
    from shortlist.training.__main__ import main

    log = StreamLog(redis_server.url)
    ids = fill(log, 5)
    root = tmp_path / "artifacts"
    args = ["compact-events", "--events", f"{redis_server.url}#shortlist:events", "--archive",
            str(tmp_path / "archive"), "--artifacts", str(root)]
    assert main(args) == 2  # no version says what is safe to trim
    assert "no published version" in capsys.readouterr().err
    publish(root, "v1", ids[3])
    assert main([*args, "--through", ids[1]]) == 0
    assert json.loads(capsys.readouterr().out)["through"] == ids[1]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["stream_length"] == 2
    publish(root, "v0", None)  # a version trained without the stream pins all of it
    assert main(args) == 0
    got = capsys.readouterr()
    assert json.loads(got.out)["archived_now"] == 0 and "version v0" in got.err
    log.close()
