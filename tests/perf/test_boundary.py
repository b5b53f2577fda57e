"""perf measures servers from outside: it may use model code, ``shortlist.common`` and the
contract-only clients, never a server's own modules (they start as processes via common.stack).
"""

from __future__ import annotations

import ast
from pathlib import Path

PERF = Path(__file__).resolve().parents[2] / "perf"
FORBIDDEN = ("shortlist.gateway", "shortlist.retrieval.server", "shortlist.retrieval.service",
             "shortlist.ranking.server", "shortlist.ranking.service")


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN)


def test_perf_imports_no_server_module():
    files = sorted(PERF.glob("*.py"))
    assert {f.stem for f in files} >= {"ann", "report", "workload", "lightgbm_threads",
                                       "blas_threads", "dtype", "batching", "server_layout",
                                       "tuning"}
    wrong = {f"{f.name}: {m}" for f in files for m in imported(f) if forbidden(m)}
    assert not wrong, sorted(wrong)


def test_the_check_sees_every_form_of_a_server_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from shortlist.ranking import service\n"
                      "import shortlist.gateway.settings\n"
                      "from shortlist.ranking.features import build_features\n"
                      "def f():\n    from shortlist.retrieval.server import create_server\n")
    assert sorted(m for m in imported(sample) if forbidden(m)) == [
        "shortlist.gateway.settings", "shortlist.ranking.service",
        "shortlist.retrieval.server", "shortlist.retrieval.server.create_server"]
    assert not forbidden("shortlist.common.stack") and not forbidden("shortlist.clients.load")
