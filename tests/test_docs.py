"""The README must stay true to the code it documents."""

from pathlib import Path

import pytest

from shortlist.gateway.settings import GatewaySettings
from shortlist.ranking.settings import RankingSettings
from shortlist.retrieval.settings import RetrievalSettings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("cls", [GatewaySettings, RetrievalSettings, RankingSettings])
def test_every_setting_is_documented_with_its_default(cls):
    prefix = cls.model_config["env_prefix"]
    for name, field in cls.model_fields.items():
        assert field.description, f"{cls.__name__}.{name} has no description"
        default = field.default
        shown = "(empty)" if default == "" else "(unset)" if default is None else str(default)
        row = f"| `{prefix}{name.upper()}` | `{shown}` |"
        assert row in README, f"README lacks or misstates {prefix}{name.upper()}"


def test_quickstart_is_two_commands():
    quick = README.split("## Quickstart", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.splitlines()]
    assert [c for c in commands if c] == ["make demo", "make test"]


def test_architecture_names_every_folder():
    for folder in ("protos/", "retrieval/", "ranking/", "gateway/", "training/", "tests/"):
        assert f"`{folder}`" in README
