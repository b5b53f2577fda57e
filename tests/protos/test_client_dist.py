"""The shortlist-client distribution: built from protos/, installed alone, calls a live gateway.

A service that embeds the contract must get the stubs and the thin client with grpcio and
protobuf only, under the ``shortlist`` namespace, and the README's example must work as printed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
# What the client distribution may pull in: its two dependencies and what they need.
ALLOWED = {"grpcio", "protobuf", "typing-extensions", "shortlist-client", "pip", "setuptools"}


def readme_example() -> str:
    """The first Python block of the README's client section."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## The client"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory) -> Path:
    """A fresh virtualenv holding only the wheel built from protos/ (and its dependencies)."""
    tmp = tmp_path_factory.mktemp("client")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(tmp / "dist"),
                    str(REPO / "protos")], check=True)
    (wheel,) = (tmp / "dist").glob("shortlist_client-*.whl")
    venv.create(tmp / "venv", with_pip=True)
    python = tmp / "venv" / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--constraint", str(REPO / "constraints.txt"), str(wheel)], check=True)
    return python


def installed(python: Path) -> set[str]:
    out = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze",
                          "--disable-pip-version-check"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split("==")[0].lower().replace("_", "-") for line in out.split()}


def test_declares_only_grpcio_and_protobuf():
    project = tomllib.loads((REPO / "protos" / "pyproject.toml").read_text())["project"]
    names = {re.match(r"[A-Za-z0-9_.-]+", d).group(0) for d in project["dependencies"]}
    assert names == {"grpcio", "protobuf"}
    main = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["version"] == main["version"]
    # The bounds the stubs need are the same in both distributions.
    for dep in project["dependencies"]:
        assert dep in main["dependencies"]


def test_installs_alone_under_the_namespace(client_venv):
    assert installed(client_venv) <= ALLOWED
    probe = ("import importlib.util as u, shortlist.client, shortlist.v1.gateway_pb2;"
             "print([m for m in ('shortlist.common', 'shortlist.retrieval', 'numpy', 'gateway',"
             " 'retrieval') if u.find_spec(m)])")
    out = subprocess.run([str(client_venv), "-c", probe], capture_output=True, text=True,
                         check=True, cwd=client_venv.parent)
    assert out.stdout.strip() == "[]"


def test_readme_example_calls_a_live_gateway(client_venv, stack, tmp_path):
    env = {**os.environ, "SHORTLIST_TARGET": stack.address("gateway")}
    example = readme_example().replace('"127.0.0.1:50051"', "None")
    run = subprocess.run([str(client_venv), "-c", example], capture_output=True, text=True,
                         env=env, timeout=60, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 11, run.stdout
    assert lines[-1].split()[0] in {"ranked", "degraded"}
    assert len({line.split()[0] for line in lines[:-1]}) == 10


def test_errors_are_one_line_naming_the_target(client_venv, tmp_path):
    from shortlist.common.stack import free_port

    target = f"127.0.0.1:{free_port()}"
    code = ("from shortlist.client import Client, ShortlistError\n"
            f"c = Client({target!r}, timeout=1.0)\n"
            "try:\n    c.recommend('1')\nexcept ShortlistError as e:\n    print(e)\n")
    run = subprocess.run([str(client_venv), "-c", code], capture_output=True, text=True,
                         timeout=30, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    line = run.stdout.strip()
    assert "\n" not in line
    assert line.startswith(f"Recommend to {target} failed: UNAVAILABLE")
    assert "SHORTLIST_TARGET" in line
