"""The Admin service (list, pin, unpin versions) on a real gRPC server with the edge in front.

Versions are tiny fake ones (a JSON file each); the watcher "loads" them by reading it. Every
refusal must be a deliberate status with a message an operator can act on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from shortlist.common import edge, serving
from shortlist.common.admin import AdminService
from shortlist.common.artifacts import publish
from shortlist.common.metrics import Metrics
from shortlist.common.versions import PIN_FILE, VersionWatcher, pinned
from shortlist.v1 import admin_pb2, admin_pb2_grpc

C = grpc.StatusCode


def _publish(root: Path, version: str, loadable: bool = True) -> Path:
    with publish(root, version, {"created_at": f"created-{version}"}) as staging:
        (staging / "data.json").write_text(json.dumps({"loadable": loadable}))
    return root / version


def _load(directory: Path) -> dict[str, Any]:
    data = json.loads((directory / "data.json").read_text())
    if not data["loadable"]:
        raise ValueError("this version cannot be loaded")
    return data


@dataclass
class Admin:
    root: Path
    watcher: VersionWatcher
    stub: admin_pb2_grpc.AdminStub

    def set(self, version: str) -> admin_pb2.SetVersionResponse:
        return self.stub.SetVersion(admin_pb2.SetVersionRequest(version=version), timeout=5)

    def refused(self, version: str) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as err:
            self.set(version)
        return err.value


def _serve(root: Path, fixed_version: str = "") -> Iterator[Admin]:
    watcher = VersionWatcher(root, _load, lambda _obj, _version: None, 60.0, fixed_version)
    watcher.check_now()
    server = serving.new_server(2, interceptors=[edge.Edge(Metrics("admin-test"))])
    admin_pb2_grpc.add_AdminServicer_to_server(AdminService(root, watcher, fixed_version),
                                               server)
    port = serving.bind(server, "127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Admin(root, watcher, admin_pb2_grpc.AdminStub(channel))
    finally:
        channel.close()
        server.stop(0)


@pytest.fixture
def admin(tmp_path) -> Iterator[Admin]:
    for version in ("v1", "v2", "v3"):
        _publish(tmp_path, version, loadable=version != "v2")
    yield from _serve(tmp_path)


def test_list_versions(admin):
    listed = admin.stub.ListVersions(admin_pb2.ListVersionsRequest(), timeout=5)
    assert [v.version for v in listed.versions] == ["v1", "v2", "v3"]
    assert listed.serving == "v3" and listed.pinned == ""
    assert [v.serving for v in listed.versions] == [False, False, True]
    assert listed.versions[0].created_at == "created-v1"


def test_pin_then_unpin(admin):
    resp = admin.set("v1")
    assert (resp.serving, resp.pinned) == ("v1", "v1")
    assert pinned(admin.root) == "v1" and admin.watcher.serving == "v1"
    listed = admin.stub.ListVersions(admin_pb2.ListVersionsRequest(), timeout=5)
    assert [v.pinned for v in listed.versions] == [True, False, False]
    resp = admin.set("")
    assert (resp.serving, resp.pinned) == ("v3", "")
    assert not (admin.root / PIN_FILE).exists()


def test_an_unknown_version_is_not_found(admin):
    err = admin.refused("v9")
    assert err.code() == C.NOT_FOUND and "not found" in err.details()
    assert pinned(admin.root) is None


@pytest.mark.parametrize("name", ["../etc", ".", "..", "a/b", "/etc", ".hidden", "a\\b",
                                  "v\x00", "v" * 300, "é" * 200])
def test_a_malformed_name_is_invalid_and_pins_nothing(admin, name):
    err = admin.refused(name)
    assert err.code() == C.INVALID_ARGUMENT
    assert err.details().startswith("not a version name: ")
    assert len(err.details()) < 100  # the name is echoed briefly, not in full
    assert pinned(admin.root) is None


def test_a_version_that_fails_verification_is_a_failed_precondition(admin):
    data = admin.root / "v1" / "data.json"
    data.write_text(data.read_text() + " ")
    err = admin.refused("v1")
    assert err.code() == C.FAILED_PRECONDITION and "data.json" in err.details()
    assert admin.watcher.serving == "v3"


def test_a_version_that_cannot_load_stays_pinned_but_is_reported(admin):
    err = admin.refused("v2")
    assert err.code() == C.FAILED_PRECONDITION
    assert "v2 is pinned but could not be loaded" in err.details()
    assert "cannot be loaded" in err.details()
    assert admin.watcher.serving == "v3"  # the old version keeps serving


def test_a_server_fixed_to_a_version_refuses_to_pin(tmp_path):
    _publish(tmp_path, "v1")
    _publish(tmp_path, "v2")
    for admin in _serve(tmp_path, fixed_version="v1"):
        err = admin.refused("v2")
        assert err.code() == C.FAILED_PRECONDITION
        assert "fixed to version v1" in err.details()
        assert pinned(tmp_path) is None


def test_set_version_writes_one_request_line(admin, caplog):
    caplog.set_level(logging.INFO, logger=edge.__name__)
    admin.set("v1")
    admin.refused("../etc")
    lines = [r.fields for r in caplog.records if r.name == edge.__name__]
    assert [(f["rpc"], f["code"], f["version"]) for f in lines] == [
        ("SetVersion", "OK", "v1"), ("SetVersion", "INVALID_ARGUMENT", "../etc")]
    assert lines[0]["pinned"] == "v1" and lines[0]["serving"] == "v1"
    assert lines[1]["error"] == "not a version name: '../etc'"
