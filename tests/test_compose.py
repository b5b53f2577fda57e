"""docker-compose.yml and the Dockerfile, checked against the real code without a Docker engine.

How commands are checked: every ``command`` (and healthcheck ``CMD``) is run through the *real*
argparse parser of the console script it names. The entry point is resolved from pyproject's
``[project.scripts]`` and called with the compose arguments while
``argparse.ArgumentParser.parse_args`` is wrapped to raise the parsed namespace instead of
returning it, so nothing past parsing (training, network calls) runs. Sub-parsers go through
``parse_known_args``, so only the top-level parse is intercepted. A flag the CLI does not
accept makes argparse exit with status 2, which the test reports. No refactor of the CLIs is
needed and the check follows them as they change. Entry points that take no arguments (the
servers, configured by environment only) must be given none.

Environment variables: each ``SHORTLIST_<SVC>_<FIELD>`` must name a field of the settings class
owning that prefix, and instantiating the class with the variable set must yield the value.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]

SERVERS = ("retrieval", "ranking", "gateway")
SERVER_SCRIPT = {name: f"shortlist-{name}" for name in SERVERS}


def _settings_classes() -> dict[str, type]:
    from gateway.settings import GatewaySettings
    from ranking.settings import RankingSettings
    from retrieval.settings import RetrievalSettings

    return {"retrieval": RetrievalSettings, "ranking": RankingSettings,
            "gateway": GatewaySettings}


SETTINGS = _settings_classes()
PREFIXES = {name: cls.model_config["env_prefix"] for name, cls in SETTINGS.items()}
# SHORTLIST_ variables read straight from os.environ (training.datasets), not via settings.
PLAIN_ENV = {"SHORTLIST_DATA_DIR"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE_FILE.is_file(), "docker-compose.yml missing at the repository root"
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


# --- helpers -----------------------------------------------------------------------------------

class _Parsed(Exception):  # noqa: N818 (a control-flow signal, not an error)
    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__(namespace)
        self.namespace = namespace


def entry_point(script: str):
    assert script in SCRIPTS, f"{script!r} is not a console script in pyproject [project.scripts]"
    module, _, attr = SCRIPTS[script].partition(":")
    return getattr(importlib.import_module(module), attr)


def parse_command(argv: list[str], monkeypatch) -> argparse.Namespace | None:
    """Parse ``argv`` (script + arguments) with the script's own parser; None if it takes none."""
    script, *args = argv
    main = entry_point(script)
    if not inspect.signature(main).parameters:
        assert not args, f"{script} is configured by environment only; got arguments {args}"
        return None
    real = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise _Parsed(real(self, args, namespace))

    with monkeypatch.context() as m:
        m.setenv("OPENBLAS_NUM_THREADS", os.environ.get("OPENBLAS_NUM_THREADS", "1"))
        m.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        try:
            main(args)
        except _Parsed as parsed:
            return parsed.namespace
        except SystemExit as exc:
            pytest.fail(f"{shlex.join(argv)}: rejected by {script}'s argument parser "
                        f"(exit {exc.code})")
    pytest.fail(f"{script} returned without parsing its arguments")


def as_argv(command: Any) -> list[str]:
    assert isinstance(command, list), (
        f"use the exec form (a list) so the server is PID 1 and receives SIGTERM: {command!r}")
    return [str(part) for part in command]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def healthcheck_argv(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] == "CMD", f"healthcheck should be CMD form: {test}"
    return [str(part) for part in test[1:]]


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    assert host and port.isdigit(), f"not host:port: {address!r}"
    return host, int(port)


def published_container_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).rsplit(":", 1)[-1].split("/")[0]))
    return ports


def named_volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> volume name for short-syntax named volumes."""
    out = {}
    for entry in service.get("volumes") or []:
        source, target = str(entry).split(":")[:2]
        out[target] = source
    return out


def script_of(service: dict[str, Any]) -> str:
    return as_argv(service["command"])[0]


def server_service(services: dict[str, Any], server: str) -> str:
    names = [n for n, s in services.items() if script_of(s) == SERVER_SCRIPT[server]]
    assert len(names) == 1, f"expected one service running {SERVER_SCRIPT[server]}: {names}"
    return names[0]


@pytest.fixture
def clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("SHORTLIST_"):
            monkeypatch.delenv(key)
    return monkeypatch


# --- commands ----------------------------------------------------------------------------------

def test_every_service_runs_a_console_script_the_real_parser_accepts(services, monkeypatch):
    assert set(services) >= {"trainer", *SERVERS}
    for name, service in services.items():
        assert "command" in service, f"{name}: no command (the image's CMD is only --help)"
        parse_command(as_argv(service["command"]), monkeypatch)


def test_trainer_fits_the_bundled_dataset_into_the_shared_volume(services, monkeypatch):
    trainer = services["trainer"]
    ns = parse_command(as_argv(trainer["command"]), monkeypatch)
    assert script_of(trainer) == "shortlist-train" and ns.command == "fit"
    from training.datasets import DATASET_NAMES

    assert ns.dataset in DATASET_NAMES, f"{ns.dataset!r}: the image only carries named datasets"
    assert (REPO / "data" / ns.dataset).is_dir(), f"data/{ns.dataset} is not in the repository"
    mounts = named_volume_mounts(trainer)
    assert ns.out in mounts, f"trainer writes {ns.out} but mounts {mounts}"
    for server in ("retrieval", "ranking"):
        svc = services[server_service(services, server)]
        artifacts = env_of(svc).get(PREFIXES[server] + "ARTIFACTS")
        assert artifacts, f"{server}: set {PREFIXES[server]}ARTIFACTS to the trainer's --out"
        assert named_volume_mounts(svc).get(artifacts) == mounts[ns.out], (
            f"{server} reads {artifacts}, not the trainer's volume {mounts[ns.out]}")


def test_healthchecks_use_the_shortlist_cli_against_the_own_port(services, monkeypatch):
    for server in SERVERS:
        name = server_service(services, server)
        service = services[name]
        ns = parse_command(healthcheck_argv(service), monkeypatch)
        assert healthcheck_argv(service)[0] == "shortlist" and ns.command == "health"
        assert ns.service == "", "probe the whole server: every server registers ''"
        host, port = split_address(ns.target)
        assert host in {"127.0.0.1", "localhost"}
        _, bound = split_address(env_of(service)[PREFIXES[server] + "ADDRESS"])
        assert port == bound, f"{name}: healthcheck probes {port}, server binds {bound}"
        timeout = service["healthcheck"].get("timeout")
        if timeout:
            assert ns.timeout < float(str(timeout).rstrip("s")), (
                f"{name}: the CLI deadline ({ns.timeout}s) must end before Docker's ({timeout})")


# --- environment -------------------------------------------------------------------------------

def expected_value(cls: type[BaseModel], field: str, raw: str) -> Any:
    return TypeAdapter(cls.model_fields[field].annotation).validate_python(raw)


def test_shortlist_env_vars_are_real_settings_and_validate(services, clean_env):
    checked = 0
    for name, service in services.items():
        for key, raw in env_of(service).items():
            if not key.startswith("SHORTLIST_") or key in PLAIN_ENV:
                continue
            owners = [s for s, prefix in PREFIXES.items() if key.startswith(prefix)]
            assert owners, f"{name}: {key} matches no settings prefix {sorted(PREFIXES.values())}"
            server = owners[0]
            assert script_of(service) == SERVER_SCRIPT[server], (
                f"{name}: {key} configures {server}, but the service runs {script_of(service)}")
            cls = SETTINGS[server]
            field = key.removeprefix(PREFIXES[server]).lower()
            assert field in cls.model_fields, (
                f"{name}: {key} is ignored: {cls.__name__} has no field {field!r}")
            clean_env.setenv(key, raw)
            settings = cls()
            assert getattr(settings, field) == expected_value(cls, field, raw), (
                f"{name}: {key}={raw!r} did not take effect")
            clean_env.delenv(key)
            checked += 1
    assert checked


def test_each_service_settings_load_together(services, clean_env):
    """All of a service's variables at once, as the container sees them."""
    for server in SERVERS:
        env = env_of(services[server_service(services, server)])
        for key, raw in env.items():
            clean_env.setenv(key, raw)
        SETTINGS[server]()
        for key in env:
            clean_env.delenv(key)


def test_servers_bind_all_interfaces_on_the_default_ports(services):
    from shortlist.common.stack import DEFAULT_PORTS

    for server in SERVERS:
        name = server_service(services, server)
        host, port = split_address(env_of(services[name])[PREFIXES[server] + "ADDRESS"])
        assert host in {"0.0.0.0", "[::]"}, f"{name} binds {host}: unreachable from elsewhere"
        assert port == DEFAULT_PORTS[server]
        published = published_container_ports(services[name])
        assert not published or published == {port}, f"{name}: publishes {published}, binds {port}"
    gateway = services[server_service(services, "gateway")]
    assert published_container_ports(gateway) == {DEFAULT_PORTS["gateway"]}


def test_gateway_targets_the_other_services(services):
    env = env_of(services[server_service(services, "gateway")])
    for upstream in ("retrieval", "ranking"):
        host, port = split_address(env[f"{PREFIXES['gateway']}{upstream.upper()}_TARGET"])
        name = server_service(services, upstream)
        assert host == name, f"gateway's {upstream} target {host!r} is not the service {name!r}"
        _, bound = split_address(env_of(services[name])[PREFIXES[upstream] + "ADDRESS"])
        assert port == bound


# --- start order -------------------------------------------------------------------------------

def depends(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {k: (v or {}).get("condition", "service_started") for k, v in deps.items()}


def test_start_order_trainer_then_models_then_gateway(services):
    assert depends(services["trainer"]) == {}
    assert services["trainer"].get("restart", "no") in {"no", False}, "a one-shot job"
    for server in ("retrieval", "ranking"):
        name = server_service(services, server)
        assert depends(services[name]) == {"trainer": "service_completed_successfully"}
    gateway = server_service(services, "gateway")
    assert depends(services[gateway]) == {
        server_service(services, "retrieval"): "service_healthy",
        server_service(services, "ranking"): "service_healthy",
    }
    for server in SERVERS:
        assert "healthcheck" in services[server_service(services, server)]


def test_named_volumes_are_declared(compose, services):
    used = {v for s in services.values() for v in named_volume_mounts(s).values()
            if not v.startswith((".", "/", "~"))}
    assert used and used <= set(compose.get("volumes") or {})


# --- image -------------------------------------------------------------------------------------

def build_context(service: dict[str, Any]) -> tuple[Path, str]:
    build = service["build"]
    if isinstance(build, str):
        return (REPO / build).resolve(), "Dockerfile"
    return (REPO / build.get("context", ".")).resolve(), build.get("dockerfile", "Dockerfile")


def test_every_service_uses_the_repository_image(services):
    images = set()
    for name, service in services.items():
        assert "build" in service, f"{name}: no build section"
        context, dockerfile = build_context(service)
        assert context.is_dir() and (context / dockerfile).is_file()
        assert (context / "pyproject.toml").is_file(), "the context must be the project root"
        images.add(service.get("image"))
    assert len(images) == 1, f"one image for all services, got {images}"


def test_dockerfile_installs_the_project_non_editable(dockerfile):
    runs = " ".join(args for word, args in dockerfile if word == "RUN")
    installs = re.findall(r"pip install ([^&;|]*)", runs)
    targets = [t for line in installs for t in line.split() if not t.startswith("-")]
    assert any(t in {".", "/src", "./"} for t in targets), f"no `pip install .` in {installs}"
    assert not re.search(r"pip install[^&;|]*(-e|--editable)\b", runs), "must not be editable"
    bases = [args.split()[0] for word, args in dockerfile if word == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases), bases
    assert "g++" in runs, "hnswlib has no wheel: it needs a C++ compiler"


def test_console_scripts_are_in_the_installed_packages():
    """A non-editable install has only the [tool.setuptools] packages: scripts must be in them."""
    packages = set(PYPROJECT["tool"]["setuptools"]["packages"])
    for script, target in SCRIPTS.items():
        module = target.partition(":")[0]
        assert module.rsplit(".", 1)[0] in packages or module in packages, (
            f"{script} -> {module}: not in a packaged module")


def test_dockerignore_keeps_what_the_install_needs():
    patterns = [line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text()
                .splitlines() if line.strip() and not line.startswith("#")]
    needed = {"pyproject.toml", "data"} | {
        d.split("/")[0] for d in PYPROJECT["tool"]["setuptools"]["package-dir"].values()}
    for path in needed:
        assert path not in patterns, f".dockerignore drops {path}, which the image needs"
    for junk in (".venv", ".git", "artifacts"):
        assert junk in patterns, f".dockerignore should exclude {junk}"


def test_image_env_and_user(dockerfile):
    final = dockerfile[max(i for i, (w, _) in enumerate(dockerfile) if w == "FROM"):]
    env = " ".join(args for word, args in final if word == "ENV")
    assert "OPENBLAS_NUM_THREADS=1" in env and "PYTHONUNBUFFERED=1" in env
    users = [args for word, args in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "run as a non-root user"


def test_datasets_resolve_in_a_non_editable_install(dockerfile, services, clean_env, tmp_path,
                                                    monkeypatch):
    """The wheel has no data/: $SHORTLIST_DATA_DIR must point where the Dockerfile copies it."""
    import training.datasets as datasets

    final = dockerfile[max(i for i, (w, _) in enumerate(dockerfile) if w == "FROM"):]
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(a for w, a in final if w == "ENV")))
    data_dir = env.get("SHORTLIST_DATA_DIR")
    assert data_dir, "set SHORTLIST_DATA_DIR: training.datasets.BUNDLED is absent from a wheel"
    copies = {}
    for word, args in final:
        if word == "COPY" and not args.startswith("--from"):
            *sources, dest = args.split()
            for source in sources:
                copies[dest.rstrip("/")] = source.rstrip("/")
    assert copies.get(data_dir.rstrip("/")) == "data", f"no `COPY data {data_dir}` in {copies}"
    ns = parse_command(as_argv(services["trainer"]["command"]), monkeypatch)
    monkeypatch.setattr(datasets, "BUNDLED", tmp_path / "site-packages" / "data")
    monkeypatch.chdir(tmp_path)
    clean_env.setenv("SHORTLIST_DATA_DIR", str(REPO / "data"))
    assert datasets.resolve_path(ns.dataset) == REPO / "data" / ns.dataset


def test_docker_compose_config_parses():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker CLI not on PATH")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run([docker, "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
