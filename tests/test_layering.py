"""The package layering of the developers' guide, enforced on the import graph.

"Dependencies point one way: clients and the gateway know only the contract; retrieval and
ranking never import each other; training reuses model code, never servers; model code never
imports grpc or settings." Concretely, for every module of the installed packages:

(a) ``shortlist.clients`` imports, of the project, only ``shortlist.v1`` and ``shortlist.client``.
(b) ``shortlist.gateway`` imports, of the project, only ``shortlist.v1``, ``shortlist.client``
    and ``shortlist.common``: never retrieval, ranking or training.
(c) ``shortlist.retrieval`` and ``shortlist.ranking`` import, of the project, only
    ``shortlist.v1``, ``shortlist.client``, ``shortlist.common`` and themselves: never each
    other, the gateway, training, the clients or perf.
(d) ``shortlist.training`` never imports a server: the ``server``, ``service``, ``settings``
    and ``__main__`` modules of retrieval, ranking and the gateway, the gateway at all, nor
    ``shortlist.common``'s serving side (``edge``, ``serving``, ``stack``, ``admin``,
    ``settings``), neither directly nor through a project module it imports.
(e) Model code, every module of retrieval and ranking except their gRPC edge (``server``,
    ``service``, ``settings``, ``__main__``), never imports ``grpc``, ``grpc_*``,
    ``pydantic_settings`` or a settings module, neither directly nor through a project module
    it imports. That includes the serving state (``retrieval.online``, ``retrieval.eventlog``,
    ``ranking.state``): its failures are typed errors (``shortlist.common.errors``) that the
    edge maps to status codes, so it has no use for grpc either.
(f) ``shortlist.common`` imports none of retrieval, ranking, gateway, training, clients, perf.
(g) ``shortlist.perf`` never imports a server's ``server``, ``service`` or ``__main__``
    module, nor the gateway, directly or not (it measures servers as processes, through
    ``common.stack``).
(h) The shortlist-client distribution (``shortlist.v1``, ``shortlist.client``) imports only
    the standard library, ``grpc``, ``google.protobuf`` and itself.

Every import counts wherever it is (module level, inside a function, under ``if``/``try``),
relative ones resolved against the importing module; the check walks the AST, so a module name
in a string, comment or docstring is not an import. ``ALLOWED`` lists known exceptions, each
with its reason; an entry that no longer matches a violation fails the test, so it is removed
as soon as the code is fixed.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SKIP_DIRS = {"build", "dist", "node_modules", "__pycache__", "site-packages"}

V1, CLIENT, COMMON = "shortlist.v1", "shortlist.client", "shortlist.common"
RETRIEVAL, RANKING, GATEWAY = "shortlist.retrieval", "shortlist.ranking", "shortlist.gateway"
TRAINING, CLIENTS, PERF = "shortlist.training", "shortlist.clients", "shortlist.perf"
SERVERS = (RETRIEVAL, RANKING, GATEWAY)
# A server package's gRPC edge: what builds, configures and runs the process.
EDGE = ("server", "service", "settings", "__main__")
COMMON_SERVING = tuple(f"{COMMON}.{m}" for m in ("edge", "serving", "stack", "admin",
                                                   "settings"))

# (rule, importing file, imported name) -> why it is tolerated for now. Keep it empty: fix the
# import instead, unless the fix is a design change in code someone else is changing.
ALLOWED: dict[tuple[str, str, str], str] = {}


def within(name: str, *prefixes: str) -> bool:
    """``name`` is one of ``prefixes`` or inside one (``a.b.c`` is within ``a.b``)."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def is_project(name: str) -> bool:
    return within(name, "shortlist")


def is_stdlib(name: str) -> bool:
    return name.split(".")[0] in sys.stdlib_module_names


def is_grpc_or_settings(name: str) -> bool:
    top = name.split(".")[0]
    return (top == "grpc" or top.startswith("grpc_") or top == "pydantic_settings"
            or (is_project(name) and "settings" in name.split(".")[2:3]))


# -- parsing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    line: int
    name: str  # absolute: ``from a.b import c`` is "a.b.c" (c may be a module or a name)


def imports(source: str, module: str, is_package: bool = False,
            filename: str = "<source>") -> list[Import]:
    """Every import in ``source`` (the module ``module``), relative ones made absolute."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            if origin == "__future__":
                continue
            found += [Import(node.lineno, origin if alias.name == "*" else
                             f"{origin}.{alias.name}") for alias in node.names]
    return sorted(found, key=lambda i: (i.line, i.name))


# -- rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    key: str
    text: str
    applies: Callable[[str], bool]  # to the importing module
    forbids: Callable[[str, str], bool]  # (importing module, imported name)


def _only(*allowed: str) -> Callable[[str, str], bool]:
    """Forbid every project import outside ``allowed`` (and the importer's own package)."""
    def forbids(module: str, name: str) -> bool:
        own = ".".join(module.split(".")[:2])
        return is_project(name) and not within(name, own, *allowed)
    return forbids


def _model_code(module: str) -> bool:
    parts = module.split(".")
    return within(module, RETRIEVAL, RANKING) and not (len(parts) == 3 and parts[2] in EDGE)


def _server_module(name: str, edge: Iterable[str]) -> bool:
    return any(within(name, f"{pkg}.{m}") for pkg in SERVERS for m in edge)


def _client_distribution(module: str, name: str) -> bool:
    return not (is_stdlib(name) or within(name, "grpc", "google.protobuf", V1, CLIENT))


RULES = (
    Rule("a", "clients know only the contract (shortlist.v1, shortlist.client)",
         lambda m: within(m, CLIENTS), _only(V1, CLIENT)),
    Rule("b", "the gateway knows only the contract and shortlist.common",
         lambda m: within(m, GATEWAY), _only(V1, CLIENT, COMMON)),
    Rule("c", "retrieval and ranking never import each other (nor gateway, training, "
              "clients, perf)",
         lambda m: within(m, RETRIEVAL, RANKING), _only(V1, CLIENT, COMMON)),
    Rule("d", "training reuses model code, never servers",
         lambda m: within(m, TRAINING),
         lambda m, n: _server_module(n, EDGE) or within(n, GATEWAY, *COMMON_SERVING)),
    Rule("e", "model code never imports grpc or settings",
         _model_code, lambda m, n: is_grpc_or_settings(n)),
    Rule("f", "shortlist.common depends on no other package but the contract",
         lambda m: within(m, COMMON), _only(V1, CLIENT)),
    Rule("g", "perf measures servers as processes: no server, service or gateway modules",
         lambda m: within(m, PERF),
         lambda m, n: _server_module(n, ("server", "service", "__main__")) or within(n, GATEWAY)),
    Rule("h", "the client distribution needs only grpc, protobuf and the standard library",
         lambda m: within(m, V1, CLIENT), _client_distribution),
)
TRANSITIVE = {"d", "e", "g"}  # also through the project modules an import pulls in


@dataclass(frozen=True)
class Violation:
    rule: str
    line: int
    name: str
    message: str


def resolve(name: str, modules: Iterable[str]) -> str | None:
    """The project module ``name`` is (or is a name inside), None if no known one."""
    known = set(modules)
    parts = name.split(".")
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in known:
            return ".".join(parts[:n])
    return None


def reached(start: str, graph: Mapping[str, list[Import]],
            bad: Callable[[str], bool]) -> list[str] | None:
    """A chain of imports from project module ``start`` to a ``bad`` name, None if none."""
    seen, frontier = {start}, [[start]]
    while frontier:
        chain = frontier.pop(0)
        for imp in graph.get(chain[-1], []):
            if bad(imp.name):
                return [*chain, imp.name]
            target = resolve(imp.name, graph)
            if target is not None and target not in seen:
                seen.add(target)
                frontier.append([*chain, target])
    return None


def violations(module: str, found: list[Import],
               graph: Mapping[str, list[Import]] | None = None) -> list[Violation]:
    """Every rule ``module``'s imports break; ``graph`` (module -> imports) for the
    transitive rules."""
    out, seen = [], set()
    for rule in RULES:
        if not rule.applies(module):
            continue
        for imp in found:
            why = None
            if rule.forbids(module, imp.name):
                why = f"imports {imp.name}"
            elif rule.key in TRANSITIVE and graph is not None:
                target = resolve(imp.name, graph)
                if (rule.key, imp.line, target) in seen:
                    continue  # ``from m import a, b``: one finding for m
                seen.add((rule.key, imp.line, target))
                chain = None if target is None else reached(
                    target, graph, lambda n, r=rule: r.forbids(module, n))
                if chain:
                    why = f"imports {target}, which leads to {' -> '.join(chain)}"
            if why:
                out.append(Violation(rule.key, imp.line, imp.name,
                                     f"{module} {why}: rule ({rule.key}) {rule.text}"))
    return out


# -- the project ---------------------------------------------------------------------------


def package_dirs() -> dict[str, Path]:
    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: REPO / folder for name, folder in setup["package-dir"].items()}


def project_modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package) for every .py file of the installed packages."""
    out = {}
    for package, root in package_dirs().items():
        def walk(directory: Path, parts: list[str], package=package) -> None:
            for path in sorted(directory.iterdir()):
                if path.is_dir():
                    if not (path.name.startswith(".") or path.name in SKIP_DIRS
                            or path.name.endswith(".egg-info")):
                        walk(path, [*parts, path.name])
                elif path.suffix == ".py":
                    is_package = path.stem == "__init__"
                    name = ".".join([package, *parts, *([] if is_package else [path.stem])])
                    out[name] = (path, is_package)
        walk(root, [])
    return out


def project_graph() -> dict[str, list[Import]]:
    return {name: imports(path.read_text(encoding="utf-8"), name, is_package,
                          str(path.relative_to(REPO)))
            for name, (path, is_package) in project_modules().items()}


# -- tests ---------------------------------------------------------------------------------


def test_the_checker_finds_imports_not_text():
    sample = '''"""from shortlist.retrieval import bundle (a docstring is no import)"""
from __future__ import annotations
import os
import grpc
from shortlist.common import errors
from shortlist.retrieval.bundle import RetrievalModels
x = "import shortlist.gateway"  # import shortlist.training
def f():
    from ..retrieval import server
    from . import settings
try:
    import pydantic_settings
except ImportError:
    pass
'''
    found = imports(sample, "shortlist.ranking.pipeline")
    assert [(i.line, i.name) for i in found] == [
        (3, "os"), (4, "grpc"), (5, "shortlist.common.errors"),
        (6, "shortlist.retrieval.bundle.RetrievalModels"), (9, "shortlist.retrieval.server"),
        (10, "shortlist.ranking.settings"), (12, "pydantic_settings")]
    got = {(v.rule, v.line) for v in violations("shortlist.ranking.pipeline", found)}
    assert got == {("c", 6), ("c", 9), ("e", 4), ("e", 10), ("e", 12)}
    # the same imports are fine in ranking's server, except the other package's
    assert {(v.rule, v.line) for v in violations("shortlist.ranking.server", found)} == {
        ("c", 6), ("c", 9)}


def test_relative_imports_resolve_from_packages_and_modules():
    src = "from . import a\nfrom .. import b\nfrom .c import d\n"
    assert [i.name for i in imports(src, "shortlist.retrieval.generators", True)] == [
        "shortlist.retrieval.generators.a", "shortlist.retrieval.b",
        "shortlist.retrieval.generators.c.d"]
    assert [i.name for i in imports(src, "shortlist.retrieval.generators.base")] == [
        "shortlist.retrieval.generators.a", "shortlist.retrieval.b",
        "shortlist.retrieval.generators.c.d"]


def test_every_rule_can_fail():
    cases = {
        "a": ("shortlist.clients.cli", "from shortlist.common import stack"),
        "b": ("shortlist.gateway.service", "import shortlist.retrieval.retriever"),
        "c": ("shortlist.retrieval.retriever", "from shortlist.ranking import features"),
        "d": ("shortlist.training.batch", "from shortlist.retrieval.server import loader"),
        "e": ("shortlist.retrieval.online", "from grpc import StatusCode"),
        "f": ("shortlist.common.candidates", "from shortlist.training import fit"),
        "g": ("shortlist.perf.workload", "from shortlist.ranking.service import X"),
        "h": ("shortlist.client.client", "import numpy"),
    }
    assert set(cases) == {r.key for r in RULES}
    for key, (module, source) in cases.items():
        assert key in {v.rule for v in violations(module, imports(source, module))}, key
    # what each rule allows
    for module, source in [
        ("shortlist.clients.cli", "from shortlist.client import Client\nimport grpc"),
        ("shortlist.gateway.service", "from shortlist.common import edge"),
        ("shortlist.training.fit", "from shortlist.retrieval.bundle import RetrievalModels"),
        ("shortlist.retrieval.server", "import grpc\nfrom shortlist.common import serving"),
        ("shortlist.perf.server_layout", "from shortlist.common.stack import Stack"),
        ("shortlist.client.client", "import grpc\nfrom google.protobuf import json_format"),
    ]:
        assert violations(module, imports(source, module)) == [], module


def test_model_code_may_not_reach_grpc_through_a_project_module():
    graph = {
        "shortlist.ranking.pipeline": imports("from shortlist.common.edge import x\n"
                                              "from shortlist.common import errors\n",
                                              "shortlist.ranking.pipeline"),
        "shortlist.common.edge": imports("import os\nimport grpc\n", "shortlist.common.edge"),
        "shortlist.common.errors": imports("import enum\n", "shortlist.common.errors"),
    }
    found = violations("shortlist.ranking.pipeline", graph["shortlist.ranking.pipeline"], graph)
    assert [(v.rule, v.line) for v in found] == [("e", 1)]
    assert "shortlist.common.edge -> grpc" in found[0].message
    # training may use model code, but not reach a server through it
    graph["shortlist.training.fit"] = imports("from shortlist.ranking import pipeline",
                                              "shortlist.training.fit")
    graph["shortlist.ranking.pipeline"] = imports("from shortlist.ranking.server import x",
                                                  "shortlist.ranking.pipeline")
    found = violations("shortlist.training.fit", graph["shortlist.training.fit"], graph)
    assert [(v.rule, v.line) for v in found] == [("d", 1)]
    assert "shortlist.ranking.pipeline -> shortlist.ranking.server.x" in found[0].message


def test_the_walk_covers_every_package_and_every_module_has_a_rule():
    modules = project_modules()
    packages = {".".join(name.split(".")[:2]) for name in modules}
    assert packages == set(package_dirs())
    assert len(modules) > 80
    assert "shortlist.retrieval.generators.base" in modules
    unruled = [m for m in modules if not any(r.applies(m) for r in RULES)]
    assert not unruled, f"no layering rule covers {unruled}: add the package to RULES"


def test_dependencies_point_one_way():
    graph = project_graph()
    modules = project_modules()
    problems, used = [], set()
    for module, found in graph.items():
        rel = modules[module][0].relative_to(REPO).as_posix()
        for v in violations(module, found, graph):
            key = (v.rule, rel, v.name)
            if key in ALLOWED:
                used.add(key)
                continue
            problems.append(f"{rel}:{v.line}: {v.message}")
    assert not problems, "layering violations (docs: tests/test_layering.py):\n" + "\n".join(
        problems)
    stale = set(ALLOWED) - used
    assert not stale, f"ALLOWED entries that no longer match a violation: {sorted(stale)}"
