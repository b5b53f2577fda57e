"""Math-thread limits are set in one place, by every entry point, before numpy loads.

An entry point module may import only the standard library and ``shortlist.common.threads`` at
top level, and its ``main()`` must call ``limit_math_threads()`` before anything else: every
other import (which may load numpy, and with it OpenBLAS) happens inside ``main`` after it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from shortlist.common import threads
from shortlist.common.threads import MATH_THREADS, limit_math_threads

REPO = Path(__file__).resolve().parents[2]
THREADS = "shortlist.common.threads"
# The long-running processes whose math libraries load after the limit (server and trainer
# entry points; the clients do no BLAS work worth limiting).
ENTRY_POINTS = {"shortlist.gateway.__main__", "shortlist.retrieval.__main__",
                "shortlist.ranking.__main__", "shortlist.training.__main__"}


def module_path(module: str) -> Path:
    dirs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    package = max((p for p in dirs if module.startswith(p + ".")), key=len)
    rest = module[len(package) + 1:].split(".")
    return REPO / dirs[package] / Path(*rest).with_suffix(".py")


def entry_point_problems(source: str) -> list[str]:
    """Why ``source`` would not limit the threads before numpy loads ([] when it does)."""
    tree = ast.parse(source)
    problems = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [] if node.level == 0 and node.module == "__future__" else [
                "." * node.level + (node.module or "")]
        else:
            continue
        for name in names:
            if name != THREADS and name.split(".")[0] not in sys.stdlib_module_names:
                problems.append(f"line {node.lineno}: top-level import of {name} (import it "
                                "inside main(), after limit_math_threads())")
    main = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"),
                None)
    if main is None:
        return [*problems, "no main()"]
    body = main.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    first = body[0] if body else None
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Call)
            and isinstance(first.value.func, ast.Name)
            and first.value.func.id == "limit_math_threads"):
        problems.append(f"line {main.lineno}: main() does not start with limit_math_threads()")
    return problems


def test_the_check_catches_a_late_limit():
    late = ("import sys\nimport numpy as np\nfrom shortlist.common.threads import "
            "limit_math_threads\n\ndef main():\n    from shortlist.x import y\n"
            "    limit_math_threads()\n")
    found = entry_point_problems(late)
    assert len(found) == 2
    assert "numpy" in found[0] and "does not start with" in found[1]
    good = ('"""doc"""\nfrom __future__ import annotations\nimport sys\n\nfrom '
            'shortlist.common.threads import limit_math_threads\n\ndef main():\n    """Run."""\n'
            "    limit_math_threads()\n    from shortlist.x import y\n")
    assert entry_point_problems(good) == []


def test_every_server_and_trainer_entry_point_is_listed():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    mains = {target.split(":")[0] for target in scripts.values()
             if target.split(":")[0].endswith(".__main__")}
    assert mains == ENTRY_POINTS


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_entry_point_limits_threads_before_anything_loads_numpy(module):
    path = module_path(module)
    assert entry_point_problems(path.read_text()) == [], path


def test_the_threads_module_imports_only_the_standard_library():
    tree = ast.parse(Path(threads.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert all(m == "__future__" or m.split(".")[0] in sys.stdlib_module_names
               for m in imported), imported


def test_importing_an_entry_point_loads_no_numpy():
    probe = ("import importlib, sys\n"
             f"for m in {sorted(ENTRY_POINTS)!r}:\n"
             "    importlib.import_module(m)\n"
             "print(sorted(m for m in ('numpy', 'scipy', 'lightgbm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_an_existing_value_is_kept(monkeypatch):
    for name in MATH_THREADS:
        monkeypatch.setenv(name, "3")
    limit_math_threads()
    assert all(os.environ[name] == "3" for name in MATH_THREADS)
    for name in MATH_THREADS:
        monkeypatch.delenv(name)
    limit_math_threads()
    assert {name: os.environ[name] for name in MATH_THREADS} == MATH_THREADS


def test_this_process_got_the_limit_before_numpy():
    """tests/conftest.py calls limit_math_threads() before importing numpy: OpenBLAS runs with
    the environment's thread count, not one per core."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import numpy  # noqa: F401  (loaded already; makes sure OpenBLAS is in the process)

    wanted = int(os.environ["OPENBLAS_NUM_THREADS"])
    blas = [i for i in threadpoolctl.threadpool_info() if i.get("internal_api") == "openblas"]
    assert blas and all(i["num_threads"] == wanted for i in blas), blas


# -- map_in_order ---------------------------------------------------------------------------


def test_map_in_order_yields_in_the_items_order_whatever_finishes_first():
    import random
    import time

    from shortlist.common.threads import map_in_order

    delays = random.Random(7).choices([0.0, 0.001, 0.004], k=60)

    def slow_square(i: int) -> int:
        time.sleep(delays[i])
        return i * i

    for first_alone in (True, False):
        assert list(map_in_order(slow_square, range(60), first_alone=first_alone)) == [
            i * i for i in range(60)]
    assert list(map_in_order(slow_square, [])) == []


def test_map_in_order_runs_the_first_item_before_any_other_starts():
    """Lazily built state (a Gram matrix, sort keys) must be built by the first item alone."""
    import threading

    from shortlist.common.threads import map_in_order

    log: list[tuple[str, int]] = []
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            log.append(("start", i))
        with lock:
            log.append(("end", i))
        return i

    assert list(map_in_order(work, range(20), threads=4)) == list(range(20))
    assert log[:2] == [("start", 0), ("end", 0)]


def test_map_in_order_uses_threads_and_stops_when_its_consumer_does():
    import threading
    import time

    from shortlist.common.threads import map_in_order

    names: set[str] = set()
    calls: list[int] = []

    def work(i: int) -> int:
        names.add(threading.current_thread().name)
        calls.append(i)
        time.sleep(0.002)
        return i

    for value in map_in_order(work, range(1000), first_alone=False, threads=2):
        if value == 10:
            break
    time.sleep(0.05)
    assert len(names) == 2  # both threads took items
    assert len(calls) < 40  # a bounded read-ahead, nothing left queued once it stopped


def test_map_in_order_raises_the_items_error_in_order():
    from shortlist.common.threads import map_in_order

    def work(i: int) -> int:
        if i == 5:
            raise ValueError("item 5")
        return i

    seen = []
    with pytest.raises(ValueError, match="item 5"):
        for value in map_in_order(work, range(30)):
            seen.append(value)
    assert seen == [0, 1, 2, 3, 4]
