"""The committed gRPC stubs: fresh against the .proto files, importable, the contract's shape."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "protos"
STUB_DIR = PROTO_ROOT / "shortlist" / "v1"
GENERATED = ("*_pb2.py", "*_pb2_grpc.py", "*.pyi")


def _pinned_grpcio_tools() -> str | None:
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["dev"]
    for requirement in dev:
        name, sep, version = requirement.partition("==")
        if name.strip() == "grpcio-tools" and sep:
            return version.strip()
    return None


def _committed() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for pattern in GENERATED for p in STUB_DIR.glob(pattern)}


def test_committed_stubs_match_a_fresh_generation(tmp_path):
    try:
        installed = metadata.version("grpcio-tools")
    except metadata.PackageNotFoundError:
        pytest.fail("grpcio-tools is not installed: pip install -e '.[dev]'")
    pinned = _pinned_grpcio_tools()
    if pinned and installed != pinned:
        pytest.skip(f"grpcio-tools {installed} installed, stubs are generated with {pinned}")
    protos = sorted(STUB_DIR.glob("*.proto"))
    assert protos, f"no .proto files under {STUB_DIR}"
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}",
           f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
           *(str(p.relative_to(PROTO_ROOT)) for p in protos)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=PROTO_ROOT)
    assert result.returncode == 0, f"protoc failed:\n{result.stderr}"
    out = tmp_path / "shortlist" / "v1"
    fresh = {p.name: p.read_bytes() for pattern in GENERATED for p in out.glob(pattern)}
    committed = _committed()
    missing = sorted(fresh.keys() - committed.keys())
    extra = sorted(committed.keys() - fresh.keys())
    stale = sorted(n for n in fresh.keys() & committed.keys() if fresh[n] != committed[n])
    problems = [f"{label}: {', '.join(names)}" for label, names in
                (("missing", missing), ("no longer generated", extra), ("stale", stale)) if names]
    assert not problems, (
        f"gRPC stubs in {STUB_DIR.relative_to(REPO)} are out of date with the .proto files "
        f"({'; '.join(problems)}): run `make protos` and commit the result")


IMPORT_PROBE = """
import json, shortlist, shortlist.v1
from shortlist.v1 import (common_pb2, gateway_pb2, gateway_pb2_grpc, ranking_pb2,
                          ranking_pb2_grpc, retrieval_pb2, retrieval_pb2_grpc)
services = {}
for mod in (gateway_pb2, retrieval_pb2, ranking_pb2):
    for name, svc in mod.DESCRIPTOR.services_by_name.items():
        services[name] = {"full_name": svc.full_name, "file_package": svc.file.package}
print(json.dumps({
    "package_file": shortlist.v1.__file__,
    "package_name": shortlist.v1.__name__,
    "module_package": gateway_pb2.__package__,
    "gateway_file": gateway_pb2.__file__,
    "services": services,
    "stubs": [hasattr(gateway_pb2_grpc, "GatewayStub"),
              hasattr(retrieval_pb2_grpc, "RetrievalStub"),
              hasattr(ranking_pb2_grpc, "RankingStub"),
              hasattr(gateway_pb2_grpc, "add_GatewayServicer_to_server"),
              hasattr(retrieval_pb2_grpc, "add_RetrievalServicer_to_server"),
              hasattr(ranking_pb2_grpc, "add_RankingServicer_to_server")],
}))
"""


def test_stubs_import_as_a_regular_package_in_a_fresh_interpreter(tmp_path):
    # cwd outside the repository: the import must come from the installed package, not cwd.
    result = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 0, f"importing shortlist.v1 failed:\n{result.stderr}"
    info = json.loads(result.stdout)
    assert info["package_file"], "shortlist.v1 is a namespace package: add its __init__.py"
    assert info["package_name"] == info["module_package"] == "shortlist.v1"
    assert (Path(info["gateway_file"]).parent / "gateway.proto").is_file()
    assert info["services"] == {
        name: {"full_name": f"shortlist.v1.{name}", "file_package": "shortlist.v1"}
        for name in ("Gateway", "Retrieval", "Ranking")
    }
    assert all(info["stubs"]), info["stubs"]


def test_recommend_request_fields():
    from google.protobuf.descriptor import FieldDescriptor as F

    from shortlist.v1 import gateway_pb2

    fields = {f.name: f for f in gateway_pb2.RecommendRequest.DESCRIPTOR.fields}
    expected = {
        "user_id": (F.TYPE_STRING, False),
        "k": (F.TYPE_INT32, False),
        "filters": (F.TYPE_MESSAGE, False),
        "recent_item_ids": (F.TYPE_STRING, True),
        "debug": (F.TYPE_BOOL, False),
    }
    assert expected.keys() <= fields.keys(), f"missing: {sorted(expected.keys() - fields)}"
    for name, (kind, repeated) in expected.items():
        field = fields[name]
        assert field.type == kind, f"RecommendRequest.{name}: type {field.type}, want {kind}"
        is_repeated = (field.is_repeated if hasattr(field, "is_repeated")
                       else field.label == F.LABEL_REPEATED)
        assert is_repeated == repeated, f"RecommendRequest.{name}: repeated should be {repeated}"
    assert fields["filters"].message_type.full_name == "shortlist.v1.Filters"
    method = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].methods_by_name["Recommend"]
    assert method.input_type.full_name == "shortlist.v1.RecommendRequest"
