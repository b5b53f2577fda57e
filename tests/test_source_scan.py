"""No unsafe deserialisation or dynamic code execution anywhere in the project's Python.

Flagged: importing ``pickle`` (``import pickle``, ``from pickle import ...``), ``pickle.load``
/ ``pickle.loads`` / ``pickle.Unpickler``, an ``allow_pickle=`` keyword that is not literally
``False`` (``np.load(..., allow_pickle=True)``) except on numpy's writers (``np.save`` and
friends: writing a pickled array, e.g. to test that a loader refuses it, deserialises nothing),
and calls to the builtins ``eval`` / ``exec`` (also as ``builtins.eval``). The check walks
the AST, so these words inside strings, comments or docstrings, and methods that merely share
the name (``model.eval()``), are not flagged.

Scanned: every ``.py`` file under the repository except virtualenvs, hidden and build
directories, the generated ``*_pb2*.py`` stubs and this file.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
THIS = Path(__file__).resolve()
EXPECTED_DIRS = ("retrieval", "ranking", "gateway", "training", "common", "protos", "tests")
SKIP_DIRS = {"build", "dist", "node_modules", "__pycache__", "site-packages"}
PICKLE_ATTRS = {"load", "loads", "Unpickler"}
DYNAMIC = {"eval", "exec"}
WRITERS = {"save", "savez", "savez_compressed", "write_array"}


def project_files() -> list[Path]:
    files = []

    def walk(directory: Path) -> None:
        if (directory / "pyvenv.cfg").exists():
            return
        for path in sorted(directory.iterdir()):
            if path.is_dir():
                if not (path.name.startswith(".") or path.name in SKIP_DIRS
                        or path.name.endswith(".egg-info")):
                    walk(path)
            elif (path.suffix == ".py" and not path.name.endswith(("_pb2.py", "_pb2_grpc.py"))
                  and path.resolve() != THIS):
                files.append(path)

    walk(REPO)
    return files


def findings(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, what) for each unsafe construct in ``source``."""
    tree = ast.parse(source, filename)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "pickle" or alias.name.startswith("pickle."):
                    found.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            if node.module and (node.module == "pickle" or node.module.startswith("pickle.")):
                found.append((node.lineno, f"from {node.module} import ..."))
        elif isinstance(node, ast.Attribute):
            if (isinstance(node.value, ast.Name) and node.value.id == "pickle"
                    and node.attr in PICKLE_ATTRS):
                found.append((node.lineno, f"pickle.{node.attr}"))
        elif isinstance(node, ast.Call):
            func = node.func
            callee = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and callee not in WRITERS and not (
                        isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append((kw.value.lineno, f"allow_pickle={ast.unparse(kw.value)}"))
            if isinstance(func, ast.Name) and func.id in DYNAMIC:
                found.append((node.lineno, f"{func.id}("))
            elif (isinstance(func, ast.Attribute) and func.attr in DYNAMIC
                  and isinstance(func.value, ast.Name) and func.value.id == "builtins"):
                found.append((node.lineno, f"builtins.{func.attr}("))
    return sorted(found)


def test_the_scanner_finds_code_not_text():
    sample = '''
import os, pickle
from pickle import loads
import numpy as np
"""pickle.load(fh) and eval(x) in a docstring"""
# exec("rm -rf") in a comment
x = "allow_pickle=True"
model.eval()
data = np.load(path, allow_pickle=True)
safe = np.load(path, allow_pickle=False)
np.save(path, arr, allow_pickle=True)
obj = pickle.load(fh)
result = eval(expr)
exec(code)
builtins.eval(expr)
'''
    assert [line for line, _ in findings(sample)] == [2, 3, 9, 12, 13, 14, 15]


def test_the_walk_covers_the_project():
    files = project_files()
    tops = {f.relative_to(REPO).parts[0] for f in files}
    missing = [d for d in EXPECTED_DIRS if (REPO / d).is_dir() and d not in tops]
    assert not missing, f"scanner walked none of {missing}"
    assert not any(".venv" in f.parts or f.name.endswith("_pb2.py") for f in files)


def test_no_pickle_eval_or_exec_in_project_sources():
    problems = []
    for path in project_files():
        rel = path.relative_to(REPO)
        try:
            hits = findings(path.read_text(encoding="utf-8"), str(rel))
        except SyntaxError as exc:
            problems.append(f"{rel}:{exc.lineno}: cannot parse ({exc.msg})")
            continue
        problems += [f"{rel}:{line}: {what}" for line, what in hits]
    assert not problems, "unsafe constructs (use JSON/npz without pickle):\n" + "\n".join(
        problems)
