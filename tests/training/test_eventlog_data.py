"""Training on the retrieval event log: extend_dataset and `fit(..., events=...)`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from shortlist.common.artifacts import MANIFEST, list_versions, verify
from shortlist.retrieval.eventlog import EventLog
from shortlist.training.__main__ import build_parser
from shortlist.training.datasets import DatasetError, load
from shortlist.training.eventlog_data import extend_dataset
from shortlist.training.fit import fit
from tests.conftest import small_grid, small_params


def write_log(path: Path) -> dict[str, int]:
    """A new user with a history, an existing user's extra event, a new and an updated item."""
    with EventLog(path) as log:
        log.append_item("new1", "Brand New", ["Documentary"], "nature whales ocean")
        seqs = [log.append_interaction("newbie", f"i{k}", 1.0, 1_700_000_000 + k)
                for k in (0, 6, 12, 18, 24, 30)]
        seqs.append(log.append_interaction("newbie", "new1", 2.0, 1_700_000_100))
        seqs.append(log.append_interaction("u0", "new1", 3.0, 1_700_000_200))
        log.append_item("i1", "Old Title", ["Action"], "first")
        last_item = log.append_item("i1", "Retitled", ["Action", "Comedy"], "second")
        return {"interactions_through": max(seqs), "items_through": last_item}


@pytest.fixture(scope="module")
def log_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("events") / "events.sqlite"
    write_log(path)
    return path


def test_extend_dataset_adds_users_items_and_events(synthetic_dir, log_path):
    base = load(str(synthetic_dir))
    n_base, n_items = len(base), len(base.items)
    ds = extend_dataset(base, log_path)

    assert len(ds) == n_base + 8
    assert len(base) == n_base and len(base.items) == n_items  # input untouched
    # a new user, with external ids, weights and timestamps as logged
    mask = ds.user_ids == "newbie"
    assert mask.sum() == 7
    assert ds.item_ids[mask].tolist() == ["i0", "i6", "i12", "i18", "i24", "i30", "new1"]
    assert ds.timestamps[mask].tolist()[-1] == 1_700_000_100
    assert ds.weights[mask].tolist()[-1] == 2.0
    # an existing user's extra interaction comes after their dataset events
    u0 = np.flatnonzero(ds.user_ids == "u0")
    assert u0[-1] == n_base + 7 and ds.item_ids[u0[-1]] == "new1"
    assert ds.weights[u0[-1]] == 3.0 and ds.timestamps[u0[-1]] == 1_700_000_200
    assert (ds.user_ids == "u0").sum() == (base.user_ids == "u0").sum() + 1
    assert ds.user_ids[:n_base].tolist() == base.user_ids.tolist()
    # a new item with categories and text, appended; an existing one updated, last write wins
    assert len(ds.items) == n_items + 1
    assert ds.items.item_ids[-1] == "new1"
    assert ds.items.titles[-1] == "Brand New"
    assert ds.items.categories[-1] == ["Documentary"]
    assert ds.items.texts[-1] == "nature whales ocean"
    i1 = ds.items.item_ids.index("i1")
    assert ds.items.titles[i1] == "Retitled"
    assert ds.items.categories[i1] == ["Action", "Comedy"]
    assert ds.items.texts[i1] == "second"
    assert base.items.titles[i1] != "Retitled"
    # the fingerprint covers the log, deterministically
    assert ds.fingerprint != base.fingerprint
    assert extend_dataset(load(str(synthetic_dir)), log_path).fingerprint == ds.fingerprint
    assert ds.extra["events"] == {"path": str(log_path.resolve()),
                                  "interactions_through": 8, "items_through": 3}
    assert ds.has_timestamps == base.has_timestamps and ds.name == base.name


def test_fingerprint_follows_log_content(synthetic_dir, tmp_path):
    base = load(str(synthetic_dir))
    empty = tmp_path / "empty.sqlite"
    EventLog(empty).close()
    same = extend_dataset(base, empty)
    assert same.fingerprint == base.fingerprint  # nothing added: the same training data
    assert same.extra["events"]["interactions_through"] == 0
    assert same.extra["events"]["items_through"] == 0
    assert len(same) == len(base)

    one, other = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    with EventLog(one) as log:
        log.append_interaction("u1", "i2", 1.0, 5)
    with EventLog(other) as log:
        log.append_interaction("u1", "i2", 2.0, 5)
    assert len({base.fingerprint, extend_dataset(base, one).fingerprint,
                extend_dataset(base, other).fingerprint}) == 3


def test_unknown_interacted_item_gets_a_placeholder(synthetic_dir, tmp_path):
    base = load(str(synthetic_dir))
    path = tmp_path / "events.sqlite"
    with EventLog(path) as log:
        log.append_interaction("u3", "ghost", 1.0, 1_700_000_000)
    ds = extend_dataset(base, path)
    assert ds.items.item_ids[-1] == "ghost"
    assert (ds.items.titles[-1], ds.items.categories[-1], ds.items.texts[-1]) == (
        "ghost", [], "")


def test_logged_event_types_type_every_row(synthetic_dir, tmp_path):
    base = load(str(synthetic_dir))
    assert base.event_codes is None
    path = tmp_path / "events.sqlite"
    with EventLog(path) as log:
        log.append_interaction("u3", "i2", 1.0, 1_700_000_000, event="dislike")
        log.append_interaction("u3", "i4", 1.0, 1_700_000_001)
        log.append_interaction("u4", "i5", 2.0, 1_700_000_002, event="purchase")
    ds = extend_dataset(base, path)
    assert ds.event_codes is not None and ds.event_codes.dtype == np.int16
    assert len(ds.event_codes) == len(ds) == len(base) + 3
    names = np.asarray(ds.event_names, dtype=object)[ds.event_codes]
    assert set(names[:len(base)].tolist()) == {""}  # the base rows name no type
    assert names[len(base):].tolist() == ["dislike", "", "purchase"]


def test_untyped_data_stays_untyped_with_the_fingerprint_it_had(synthetic_dir, tmp_path):
    base = load(str(synthetic_dir))
    path = tmp_path / "events.sqlite"
    with EventLog(path) as log:
        seq = log.append_interaction("u1", "i2", 1.0, 5)
    ds = extend_dataset(base, path)
    assert ds.event_codes is None and ds.event_names == []
    # what the fingerprint was before event types existed
    before = hashlib.sha256(base.fingerprint.encode())
    before.update(b"\ni" + json.dumps([seq, "u1", "i2", 1.0, 5]).encode())
    assert ds.fingerprint == before.hexdigest()
    typed = tmp_path / "typed.sqlite"
    with EventLog(typed) as log:
        log.append_interaction("u1", "i2", 1.0, 5, event="like")
    assert extend_dataset(base, typed).fingerprint != ds.fingerprint


def test_a_typed_base_keeps_its_codes_and_untyped_logged_rows_are_untyped(synthetic_dir,
                                                                          tmp_path):
    plain = load(str(synthetic_dir))
    codes = (np.arange(len(plain)) % 2).astype(np.int16)
    base = dataclasses.replace(plain, event_codes=codes, event_names=["view", "like"])
    path = tmp_path / "events.sqlite"
    with EventLog(path) as log:
        log.append_interaction("u1", "i2", 1.0, 5)
        log.append_interaction("u1", "i3", 1.0, 6, event="like")
    ds = extend_dataset(base, path)
    assert ds.event_names == ["view", "like", ""]
    assert ds.event_codes[:len(base)].tolist() == codes.tolist()
    assert ds.event_codes[len(base):].tolist() == [2, 1]


def test_a_malformed_logged_type_is_a_dataset_error(synthetic_dir, tmp_path):
    path = tmp_path / "events.sqlite"
    with EventLog(path) as log:  # the server refuses such a type; the log itself does not
        log.append_interaction("u1", "i2", 1.0, 5, event="not a name")
    with pytest.raises(DatasetError, match="event log record 1: .*not a name"):
        extend_dataset(load(str(synthetic_dir)), path)


def test_missing_or_corrupt_log_is_a_dataset_error(synthetic_dir, tmp_path):
    base = load(str(synthetic_dir))
    with pytest.raises(DatasetError, match="not found"):
        extend_dataset(base, tmp_path / "nope.sqlite")
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DatasetError):
        extend_dataset(base, bad)


def test_fit_with_events_publishes_them(synthetic_dir, tmp_path):
    log_path = tmp_path / "events.sqlite"
    through = write_log(log_path)
    out = tmp_path / "artifacts"
    version = fit(str(synthetic_dir), out, small_params(), progress=False, grid=small_grid(),
                  events=log_path)
    assert list_versions(out) == [version]
    verify(version)
    manifest = json.loads((version / MANIFEST).read_text())
    assert manifest["events"] == {"path": str(log_path.resolve()), **through}
    base = load(str(synthetic_dir))
    extended = extend_dataset(base, log_path)
    assert manifest["dataset"]["fingerprint"] == extended.fingerprint != base.fingerprint
    assert version.name.endswith(extended.fingerprint[:8])
    assert manifest["dataset"]["users"] == len(np.unique(base.user_ids)) + 1
    assert manifest["dataset"]["items"] == len(base.items) + 1
    catalog = json.loads((version / "catalog.json").read_text())
    idx = catalog["item_ids"].index("new1")
    assert catalog["titles"][idx] == "Brand New"
    assert catalog["categories"][idx] == ["Documentary"]
    i1 = catalog["item_ids"].index("i1")
    assert catalog["titles"][i1] == "Retitled"


def test_cli_accepts_events(tmp_path):
    args = build_parser().parse_args(["fit", "--dataset", "d", "--events", str(tmp_path / "e")])
    assert args.events == str(tmp_path / "e")
    assert build_parser().parse_args(["fit"]).events is None


def test_fit_reads_the_shared_stream_and_a_replica_replays_only_what_follows(
        synthetic_dir, tmp_path, redis_server):
    from shortlist.retrieval.bundle import RetrievalModels
    from shortlist.retrieval.eventlog import interaction_entry, item_entry
    from shortlist.retrieval.retriever import Retriever
    from shortlist.retrieval.shared import SharedState
    from shortlist.retrieval.stream import StreamLog

    log = StreamLog(redis_server.url)
    log.append(interaction_entry("stream-user", "i1", 1.0, 1_700_000_000))
    through, _ = log.append(item_entry("from-stream", "Streamed", ["Drama"], "text"))
    version = fit(str(synthetic_dir), tmp_path / "artifacts", small_params(), progress=False,
                  grid=small_grid(), events=redis_server.url)
    manifest = json.loads((version / MANIFEST).read_text())
    assert manifest["events"] == {
        "stream": f"127.0.0.1:{redis_server.port}/0#shortlist:events", "stream_through": through}
    assert "from-stream" in json.loads((version / "catalog.json").read_text())["item_ids"]

    log.append(interaction_entry("stream-user", "i2", 1.0, 1_700_000_001))  # after the fit
    state = SharedState(StreamLog(redis_server.url))
    retriever = Retriever(RetrievalModels.load(version), version.name, 2000)
    state.swap(state.prepare(retriever, manifest["events"]))
    m = state.retriever.models
    items = [m.catalog.vocab.id(i) for i in m.history.events(m.users.index("stream-user"))[0]]
    assert sorted(items) == ["i1", "i2"]  # i1 from training, i2 replayed; neither twice
    state.close()
    log.close()
