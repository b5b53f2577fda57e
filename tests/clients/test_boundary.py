"""The clients know only the contract: what they show or measure is what any client would see.

Every import in clients/*.py (top level or inside a function) must be the standard library,
gRPC and its health/reflection packages, numpy/matplotlib for reports, the contract
(``shortlist.v1``, ``shortlist.client``, and ``google.protobuf``, which its messages are made
of: its JSON mapping reads an Experiment from a file) or the clients package itself.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

CLIENTS = Path(__file__).resolve().parents[2] / "clients"
THIRD_PARTY = {"grpc", "grpc_health", "grpc_reflection", "numpy", "matplotlib"}
SHORTLIST = ("shortlist.v1", "shortlist.client", "shortlist.clients")


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == "shortlist":  # `from shortlist import x` imports shortlist.x
                names.update(f"shortlist.{alias.name}" for alias in node.names)
    return names


def allowed(module: str) -> bool:
    if module == "google.protobuf" or module.startswith("google.protobuf."):
        return True
    top = module.split(".")[0]
    if top == "shortlist":
        return any(module == s or module.startswith(s + ".") for s in SHORTLIST)
    return top in THIRD_PARTY or top in sys.stdlib_module_names or top == "__future__"


def test_clients_import_only_the_contract():
    files = sorted(CLIENTS.glob("*.py"))
    assert {f.name for f in files} >= {"cli.py", "demo.py", "bench.py", "overload.py", "load.py"}
    wrong = {f"{f.name}: {m}" for f in files for m in imported(f) if not allowed(m)}
    assert not wrong, sorted(wrong)


def test_the_check_catches_a_server_import():
    assert not allowed("shortlist.common.stack")
    assert not allowed("shortlist.gateway.settings")
    assert not allowed("shortlist.clientsx")
    assert not allowed("prometheus_client.parser")
    assert allowed("shortlist.client.channel") and allowed("shortlist.v1.gateway_pb2")
