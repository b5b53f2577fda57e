"""The distributions ship every package: a folder with an __init__.py that pyproject does not
list installs fine in editable mode and is silently missing from a wheel (and the image)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _packages_on_disk(config: dict, root: Path) -> set[str]:
    found = set()
    for name, folder in config["package-dir"].items():
        base = root / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if "__pycache__" not in rel.parts:
                found.add(".".join([name, *rel.parts]))
    return found


def test_server_distribution_lists_every_package():
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert _packages_on_disk(tool, REPO) == set(tool["packages"])


def test_client_distribution_is_the_contract_only():
    tool = tomllib.loads((REPO / "protos" / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(REPO / "protos").parts)
               for p in (REPO / "protos" / "shortlist").rglob("__init__.py")
               if "__pycache__" not in p.parts}
    assert on_disk == set(tool["packages"]) == {"shortlist.v1", "shortlist.client"}
