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

Interpolation: the file is read as ``docker compose`` reads it, with ``${VAR:-default}`` and the
other forms substituted from a given host environment (empty unless a test sets variables), so
the defaults are what a plain ``docker compose up`` gets.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path, PurePosixPath
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
# Monitoring services run these published images (every other service runs the repository's),
# configured by files under deploy/.
MONITORING_IMAGES = {"prometheus": "prom/prometheus", "grafana": "grafana/grafana"}


def _settings_classes() -> dict[str, type]:
    from shortlist.gateway.settings import GatewaySettings
    from shortlist.ranking.settings import RankingSettings
    from shortlist.retrieval.settings import RetrievalSettings

    return {"retrieval": RetrievalSettings, "ranking": RankingSettings,
            "gateway": GatewaySettings}


SETTINGS = _settings_classes()
PREFIXES = {name: cls.model_config["env_prefix"] for name, cls in SETTINGS.items()}
# SHORTLIST_ variables read straight from os.environ (training.datasets), not via settings.
PLAIN_ENV = {"SHORTLIST_DATA_DIR"}


_REFERENCE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.S)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ``$$``, ``$VAR``, ``${VAR}`` and the ``-``, ``?``,
    ``+`` forms with and without ``:`` (``:`` also treats an empty value as unset)."""

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        if match.group("plain"):
            return env.get(match.group("plain"), "")
        parts = _BRACED.fullmatch(match.group("braced"))
        assert parts, f"unsupported interpolation {match.group(0)!r}"
        name, op, arg = parts.group("name", "op", "arg")
        assert "$" not in (arg or ""), f"nested interpolation is not checked: {match.group(0)!r}"
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op is None:
            return value or ""
        if op.endswith("-"):
            return arg if unset else value
        if op.endswith("?"):
            assert not unset, f"{name} must be set: {arg}"
            return value
        return "" if unset else arg  # the + forms

    return _REFERENCE.sub(substitute, text)


def interpolated(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolated(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolated(value, env) for key, value in node.items()}
    return node


def load_compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose file as ``docker compose`` sees it with host environment ``env``."""
    assert COMPOSE_FILE.is_file(), "docker-compose.yml missing at the repository root"
    return interpolated(yaml.safe_load(COMPOSE_FILE.read_text()), env or {})


def compose_variables() -> set[str]:
    found = set()
    for match in _REFERENCE.finditer(COMPOSE_FILE.read_text()):
        if match.group("plain"):
            found.add(match.group("plain"))
        elif match.group("braced") is not None:
            found.add(_BRACED.fullmatch(match.group("braced")).group("name"))
    return found


def header_comment() -> str:
    """The comment block at the top of docker-compose.yml, without the ``#`` markers."""
    lines = []
    for line in COMPOSE_FILE.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:])
    return "\n".join(lines)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


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


def volume_mounts(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """container path -> (source, mode) for short-syntax volumes; mode "rw" unless given."""
    out = {}
    for entry in service.get("volumes") or []:
        assert isinstance(entry, str), f"use the short syntax SOURCE:TARGET[:MODE]: {entry!r}"
        source, target, *mode = entry.split(":")
        out[target] = (source, mode[0] if mode else "rw")
    return out


def named_volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> volume name for short-syntax named volumes."""
    return {target: source for target, (source, _) in volume_mounts(service).items()}


def is_named_volume(source: str) -> bool:
    return not source.startswith((".", "/", "~", "$"))


def port_bindings(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) per published port; ip "" means every interface."""
    out = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            out.append((str(entry.get("host_ip", "")), int(entry.get("published", 0)),
                        int(entry["target"])))
            continue
        *host, container = str(entry).split("/")[0].rsplit(":", 2)
        ip, port = (host if len(host) == 2 else ["", *host]) if host else ["", container]
        out.append((ip, int(port), int(container)))
    return out


def script_of(service: dict[str, Any]) -> str:
    """The console script a service runs ("" for one that runs its image's own entry point)."""
    return as_argv(service["command"])[0] if "command" in service else ""


def own_services(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the repository's image (all but the monitoring ones)."""
    return {name: s for name, s in services.items() if name not in MONITORING_IMAGES}


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
    for name, service in own_services(services).items():
        assert "command" in service, f"{name}: no command (the image's CMD is only --help)"
        parse_command(as_argv(service["command"]), monkeypatch)


def test_trainer_fits_the_bundled_dataset_into_the_shared_volume(services, monkeypatch):
    trainer = services["trainer"]
    ns = parse_command(as_argv(trainer["command"]), monkeypatch)
    assert script_of(trainer) == "shortlist-train" and ns.command == "fit"
    from shortlist.training.datasets import DATASET_NAMES

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
    from shortlist.common.stack import DEFAULT_METRICS_PORTS, DEFAULT_PORTS

    for server in SERVERS:
        name = server_service(services, server)
        host, port = split_address(env_of(services[name])[PREFIXES[server] + "ADDRESS"])
        assert host in {"0.0.0.0", "[::]"}, f"{name} binds {host}: unreachable from elsewhere"
        assert port == DEFAULT_PORTS[server]
        published = published_container_ports(services[name])
        allowed = {port, DEFAULT_METRICS_PORTS[server]}
        assert published <= allowed, f"{name}: publishes {published}, serves {allowed}"
    gateway = services[server_service(services, "gateway")]
    assert DEFAULT_PORTS["gateway"] in published_container_ports(gateway)


def test_every_port_is_published_on_localhost_by_default(services):
    """A plain `up` (no variables set) reaches nothing from other hosts."""
    bindings = [(name, b) for name, s in services.items() for b in port_bindings(s)]
    assert bindings
    for name, (ip, host_port, container_port) in bindings:
        assert ip == "127.0.0.1", f"{name}: {container_port} is published on {ip or 'all'}"
        assert host_port == container_port, f"{name}: {container_port} published as {host_port}"


def test_metrics_endpoints_are_served_and_published_locally(services, monkeypatch):
    """Each server's /metrics on the `serve --metrics` port, reachable through the port map."""
    from shortlist.common.stack import DEFAULT_METRICS_PORTS

    for server in SERVERS:
        name = server_service(services, server)
        settings = settings_of(services, server, monkeypatch)
        assert settings.metrics_port == DEFAULT_METRICS_PORTS[server], (
            f"{name}: set {PREFIXES[server]}METRICS_PORT={DEFAULT_METRICS_PORTS[server]}")
        assert settings.metrics_host in {"0.0.0.0", "::"}, (
            f"{name}: /metrics binds {settings.metrics_host}, unreachable through the port map")
        assert ("127.0.0.1", settings.metrics_port, settings.metrics_port) in port_bindings(
            services[name]), f"{name}: /metrics port not published on 127.0.0.1"


def settings_of(services: dict[str, Any], server: str, monkeypatch) -> BaseModel:
    """The settings a server's container loads from its compose environment (alone)."""
    env = env_of(services[server_service(services, server)])
    with monkeypatch.context() as m:
        for key in list(os.environ):
            if key.startswith("SHORTLIST_"):
                m.delenv(key)
        for key, raw in env.items():
            m.setenv(key, raw)
        return SETTINGS[server]()


def test_gateway_is_exposed_only_through_the_documented_variable():
    from shortlist.common.stack import DEFAULT_PORTS

    exposed = load_compose({"SHORTLIST_PUBLISH_HOST": "0.0.0.0"})["services"]
    gateway = (server_service(exposed, "gateway"), DEFAULT_PORTS["gateway"])
    for name, service in exposed.items():
        for ip, _, container_port in port_bindings(service):
            expected = "0.0.0.0" if (name, container_port) == gateway else "127.0.0.1"
            assert ip == expected, f"{name}: {container_port} published on {ip}"


def test_no_write_token_by_default_means_no_check_anywhere(services, monkeypatch):
    """Consistent when unset: a token on retrieval alone would reject the gateway's writes."""
    for server in SERVERS:
        assert settings_of(services, server, monkeypatch).write_token.get_secret_value() == ""
    gateway = settings_of(services, "gateway", monkeypatch)
    assert gateway.upstream_token.get_secret_value() == ""


def test_write_token_protects_every_server_and_the_gateway_forwards_it(monkeypatch):
    token = "s3cret-token"
    services = load_compose({"SHORTLIST_WRITE_TOKEN": token})["services"]
    gateway = settings_of(services, "gateway", monkeypatch)
    assert gateway.write_token.get_secret_value() == token, "the published gateway is unguarded"
    for upstream in ("retrieval", "ranking"):
        own = settings_of(services, upstream, monkeypatch).write_token.get_secret_value()
        assert own == token, f"{upstream} (published on localhost) does not require the token"
        assert gateway.upstream_token.get_secret_value() == own, (
            f"the gateway's upstream token is not {upstream}'s write token: writes would fail")


def test_every_variable_is_documented_and_optional():
    """Each ${VAR} is explained in the header comment, and `up` works with none of them set."""
    header = header_comment()
    variables = compose_variables()
    assert {"SHORTLIST_WRITE_TOKEN", "SHORTLIST_PUBLISH_HOST"} <= variables
    for name in variables:
        assert name in header, f"${{{name}}} is not explained in the header comment"
    load_compose({})  # a `:?` (required) variable would fail here


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
            if is_named_volume(v)}
    assert used and used <= set(compose.get("volumes") or {})


def test_trainer_fits_only_while_no_version_is_published(services, monkeypatch, tmp_path,
                                                         capsys):
    """`up` again must not fit and publish again. The real trainer command, aimed at a root
    holding a version and at a dataset that does not exist: it must stop before loading it."""
    argv = as_argv(services["trainer"]["command"])
    ns = parse_command(argv, monkeypatch)
    assert ns.if_missing, "the trainer refits on every `up`: pass --if-missing"
    root = tmp_path / "artifacts"
    (root / "20240101T000000Z-deadbeef").mkdir(parents=True)
    (root / "20240101T000000Z-deadbeef" / "manifest.json").write_text("{}")
    swapped = {"--out": str(root), "--dataset": str(tmp_path / "no-such-dataset")}
    argv = [swapped.get(prev, arg) for prev, arg in zip(["", *argv[:-1]], argv, strict=True)]
    assert set(swapped.values()) <= set(argv), "write `--out DIR --dataset NAME` (no `=`)"
    assert entry_point(argv[0])(argv[1:]) == 0
    assert "not fitting" in capsys.readouterr().out
    assert sorted(p.name for p in root.iterdir()) == ["20240101T000000Z-deadbeef"]


def documented_runs() -> list[tuple[str, list[str]]]:
    """(service, argv) of each `docker compose run ... SERVICE ARGV` in the header comment."""
    text = re.sub(r"\\\n", " ", header_comment())
    runs = []
    for line in text.splitlines():
        if "docker compose run" not in line:
            continue
        words = shlex.split(line.split("docker compose run", 1)[1].split("#", 1)[0])
        while words and words[0].startswith("-"):
            words.pop(0)
        runs.append((words[0], words[1:]))
    return runs


def volume_holding(service: dict[str, Any], path: PurePosixPath) -> str | None:
    """The source of the innermost mount of ``service`` that contains ``path``."""
    mounts = named_volume_mounts(service)
    holders = [t for t in mounts if path.is_relative_to(PurePosixPath(t))]
    return mounts[max(holders, key=len)] if holders else None


def test_documented_retrain_publishes_into_the_served_volume_with_the_event_log(
        services, dockerfile, monkeypatch):
    """The header's retrain command parses, really fits (no --if-missing), writes the volume
    the servers read and folds in the event log retrieval writes."""
    runs = [(svc, argv) for svc, argv in documented_runs()
            if argv[:2] == ["shortlist-train", "fit"]]
    assert runs, "the header comment documents no `docker compose run ... shortlist-train fit`"
    retrieval = services[server_service(services, "retrieval")]
    settings = settings_of(services, "retrieval", monkeypatch)
    served = volume_holding(retrieval, PurePosixPath(str(settings.artifacts)))
    log = container_path(settings.event_log, dockerfile)
    for service, argv in runs:
        assert service in services, f"`docker compose run {service}`: no such service"
        ns = parse_command(argv, monkeypatch)
        assert not ns.if_missing, "a retrain with --if-missing does nothing"
        assert volume_holding(services[service], PurePosixPath(ns.out)) == served, (
            f"{service} publishes to {ns.out}, not the volume retrieval serves ({served})")
        if ns.events is not None:
            assert container_path(ns.events, dockerfile) == log, (
                f"--events {ns.events} is not retrieval's event log {log}")
            assert volume_holding(services[service], log) == volume_holding(retrieval, log), (
                f"{service} does not mount the volume holding {log}")


def admin_servers() -> set[str]:
    """Servers that register the Admin service, whose SetVersion writes the CURRENT pin file
    into the server's artifact root (common.admin -> common.versions.pin)."""
    out = set()
    for server in SERVERS:
        source = inspect.getsource(importlib.import_module(f"shortlist.{server}.server"))
        if "AdminService(" in source:
            out.add(server)
    return out


def test_pin_writers_mount_the_artifacts_writable(services, monkeypatch):
    writers = admin_servers()
    assert writers, "no server registers the Admin service: this check lost its subject"
    for server in writers:
        name = server_service(services, server)
        root = str(settings_of(services, server, monkeypatch).artifacts)
        mounts = volume_mounts(services[name])
        assert root in mounts, f"{name}: artifact root {root} is not a mount ({mounts})"
        assert mounts[root][1] != "ro", (
            f"{name}: {root} is read-only, so `shortlist rollback` cannot write the pin file")


def final_stage(dockerfile: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return dockerfile[max(i for i, (w, _) in enumerate(dockerfile) if w == "FROM"):]


def container_path(path: Path, dockerfile: list[tuple[str, str]]) -> PurePosixPath:
    """``path`` as the container resolves it: relative paths start at the final WORKDIR."""
    workdirs = [args for word, args in final_stage(dockerfile) if word == "WORKDIR"]
    assert workdirs, "the final stage sets no WORKDIR"
    return PurePosixPath(workdirs[-1]) / PurePosixPath(Path(path).as_posix())


def test_event_log_lives_on_a_writable_named_volume(compose, services, dockerfile, monkeypatch):
    """Acknowledged feedback and upserts must survive `up --force-recreate` and image updates."""
    name = server_service(services, "retrieval")
    log = container_path(settings_of(services, "retrieval", monkeypatch).event_log, dockerfile)
    mounts = volume_mounts(services[name])
    holders = [t for t in mounts if log.is_relative_to(PurePosixPath(t))]
    assert holders, f"{name}: event log {log} is inside the container, lost on recreate"
    source, mode = mounts[max(holders, key=len)]
    assert is_named_volume(source) and source in (compose.get("volumes") or {}), (
        f"{name}: {log} is on {source!r}, not a declared named volume")
    assert mode != "ro", f"{name}: the event log's volume is read-only"


def test_named_volume_mount_points_belong_to_the_runtime_user(services, dockerfile):
    """An empty named volume copies the ownership of the image directory it is mounted on; a
    root-owned one would leave the non-root servers unable to write the log or the pin."""
    final = final_stage(dockerfile)
    user = [args for word, args in final if word == "USER"][-1].split(":")[0]
    owners = {user}
    for word, args in final:
        if word == "RUN":
            for m in re.finditer(r"useradd\b[^&;|]*--uid (\d+)[^&;|]*?(\S+)\s*(?:$|&&|;)", args):
                if m.group(1) == user:
                    owners.add(m.group(2))
    owned = set()
    for word, args in final:
        if word == "RUN":
            for m in re.finditer(r"chown\s+(?:-\S+\s+)*(\S+)\s+([^&;|]+)", args):
                if m.group(1).split(":")[0] in owners:
                    owned |= {PurePosixPath(p) for p in m.group(2).split()}
    targets = {PurePosixPath(t) for s in own_services(services).values()
               for t, (source, _) in volume_mounts(s).items() if is_named_volume(source)}
    assert targets
    for target in targets:
        assert target in owned, f"{target} is not created and chowned to {owners} in the image"


# --- image -------------------------------------------------------------------------------------

def build_context(service: dict[str, Any]) -> tuple[Path, str]:
    build = service["build"]
    if isinstance(build, str):
        return (REPO / build).resolve(), "Dockerfile"
    return (REPO / build.get("context", ".")).resolve(), build.get("dockerfile", "Dockerfile")


def test_every_service_uses_the_repository_image(services):
    images = set()
    for name, service in own_services(services).items():
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


def test_dockerfile_installs_with_the_lock_file(dockerfile):
    """The image gets the dependency versions the tests ran against, not the newest in range."""
    runs = " ".join(args for word, args in dockerfile if word == "RUN")
    installs = [line for line in re.findall(r"pip install ([^&;|]*)", runs)
                if any(t in {".", "/src", "./"} for t in line.split())]
    assert installs, "no `pip install .`"
    for line in installs:
        words = line.split()
        given = [words[i + 1] for i, w in enumerate(words[:-1]) if w in {"-c", "--constraint"}]
        given += [w.split("=", 1)[1] for w in words if w.startswith("--constraint=")]
        assert given, f"`pip install {line}` ignores the lock: add --constraint constraints.txt"
        for path in given:
            assert not path.startswith("/") and (REPO / path).is_file(), (
                f"{path}: not a file of the build context")
            assert not dockerignored(path), f".dockerignore drops {path}, which the build reads"


def test_console_scripts_are_in_the_installed_packages():
    """A non-editable install has only the [tool.setuptools] packages: scripts must be in them."""
    packages = set(PYPROJECT["tool"]["setuptools"]["packages"])
    for script, target in SCRIPTS.items():
        module = target.partition(":")[0]
        assert module.rsplit(".", 1)[0] in packages or module in packages, (
            f"{script} -> {module}: not in a packaged module")


def dockerignore_patterns() -> list[str]:
    return [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _pattern_matches(pattern: str, path: str) -> bool:
    """Docker's matching: glob per path segment (``*`` never crosses ``/``), ``**`` any number
    of segments; a pattern matching a directory excludes everything under it."""
    pat = [seg for seg in pattern.strip("/").split("/") if seg]
    parts = path.split("/")

    def match(i: int, j: int) -> bool:
        if i == len(pat):
            return True
        if pat[i] == "**":
            return any(match(i + 1, k) for k in range(j, len(parts) + 1))
        return (j < len(parts) and fnmatch.fnmatchcase(parts[j], pat[i])
                and match(i + 1, j + 1))

    return match(0, 0)


def dockerignored(path: str) -> bool:
    """Whether the build context leaves ``path`` (relative to the context) out."""
    ignored = False
    for pattern in dockerignore_patterns():
        negated = pattern.startswith("!")
        if _pattern_matches(pattern.removeprefix("!"), path):
            ignored = not negated
    return ignored


def test_dockerignore_matcher_follows_docker_rules():
    assert _pattern_matches("state", "state/events.db")
    assert _pattern_matches("reports/*.log", "reports/run.log")
    assert not _pattern_matches("reports/*.log", "reports/tuning.json")
    assert _pattern_matches("**/__pycache__", "common/__pycache__/x.pyc")
    assert _pattern_matches("**/*.py[co]", "common/x.pyc")
    assert not _pattern_matches("build", "common/build.py")
    assert not _pattern_matches("data", "database")


def test_dockerignore_keeps_what_the_install_needs():
    needed = {"pyproject.toml", "README.md", "constraints.txt", "data/ml-latest-small"} | {
        d for d in PYPROJECT["tool"]["setuptools"]["package-dir"].values()}
    for path in needed:
        assert not dockerignored(path), f".dockerignore drops {path}, which the image needs"
    for junk in (".venv/bin/python", ".git/HEAD", "artifacts/v1/manifest.json",
                 "state/events.db", "bench/bench.json", "scale/run.json", "logs/gateway.log",
                 "reports/overload.log", ".lock-venv/bin/pip", ".env",
                 "common/__pycache__/admin.cpython-311.pyc"):
        assert dockerignored(junk), f".dockerignore should exclude {junk}"


def test_image_env_and_user(dockerfile):
    final = dockerfile[max(i for i, (w, _) in enumerate(dockerfile) if w == "FROM"):]
    env = " ".join(args for word, args in final if word == "ENV")
    assert "OPENBLAS_NUM_THREADS=1" in env and "PYTHONUNBUFFERED=1" in env
    users = [args for word, args in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "run as a non-root user"


def test_datasets_resolve_in_a_non_editable_install(dockerfile, services, clean_env, tmp_path,
                                                    monkeypatch):
    """The wheel has no data/: $SHORTLIST_DATA_DIR must point where the Dockerfile copies it."""
    import shortlist.training.datasets as datasets

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


# --- monitoring --------------------------------------------------------------------------------

def bind_mounts(service: dict[str, Any]) -> dict[str, tuple[Path, str]]:
    """container path -> (repository path, mode) of the service's bind mounts."""
    return {target: ((REPO / source).resolve(), mode)
            for target, (source, mode) in volume_mounts(service).items()
            if not is_named_volume(source)}


def mounted_file(service: dict[str, Any], container_path: str) -> Path:
    """The repository file a container path of ``service`` is, through its bind mounts."""
    path = PurePosixPath(container_path)
    for target, (source, _) in bind_mounts(service).items():
        if path == PurePosixPath(target) or path.is_relative_to(PurePosixPath(target)):
            return source / path.relative_to(PurePosixPath(target))
    pytest.fail(f"{container_path} is not under a bind mount of the service")


def test_monitoring_runs_pinned_images_on_config_from_the_repository(services):
    assert set(services) - set(own_services(services)) == set(MONITORING_IMAGES)
    for name, image in MONITORING_IMAGES.items():
        service = services[name]
        assert "build" not in service
        repo, _, tag = service["image"].partition(":")
        assert repo == image and tag and tag != "latest", (
            f"{name}: pin a version of {image}, not {service['image']!r}")
        mounts = bind_mounts(service)
        assert mounts, f"{name} mounts no configuration"
        for target, (source, mode) in mounts.items():
            assert source.exists() and source.is_relative_to(REPO / "deploy"), (
                f"{name}: {target} mounts {source}, not a file under deploy/")
            assert mode == "ro", f"{name}: mount {target} read-only"


def prometheus_config(services: dict[str, Any]) -> dict[str, Any]:
    service = services["prometheus"]
    flags = dict(arg.split("=", 1) for arg in as_argv(service["command"]) if "=" in arg)
    return yaml.safe_load(mounted_file(service, flags["--config.file"]).read_text())


def scrape_targets(job: dict[str, Any]) -> set[tuple[str, int]]:
    """(host, port) pairs a job scrapes: static targets, and DNS A-record discovery."""
    out = set()
    for static in job.get("static_configs", []):
        out |= {split_address(t) for t in static["targets"]}
    for dns in job.get("dns_sd_configs", []):
        assert dns.get("type", "SRV") == "A", "A records: compose's DNS has no SRV records"
        out |= {(name, int(dns["port"])) for name in dns["names"]}
    return out


def test_prometheus_scrapes_each_server_on_its_metrics_port(services, monkeypatch):
    jobs = {job["job_name"]: scrape_targets(job)
            for job in prometheus_config(services)["scrape_configs"]}
    expected = {}
    for server in SERVERS:
        name = server_service(services, server)
        expected[server] = {(name, settings_of(services, server, monkeypatch).metrics_port)}
    assert jobs == expected, "deploy/prometheus.yml must scrape each server's /metrics port"


def test_grafana_reads_prometheus_and_the_dashboard(services):
    grafana = services["grafana"]
    assert "prometheus" in depends(grafana)
    [source] = yaml.safe_load(mounted_file(
        grafana, "/etc/grafana/provisioning/datasources/prometheus.yml").read_text())[
        "datasources"]
    host, port = split_address(source["url"].removeprefix("http://"))
    assert host == "prometheus" and ("127.0.0.1", port, port) in port_bindings(
        services["prometheus"])
    [provider] = yaml.safe_load(mounted_file(
        grafana, "/etc/grafana/provisioning/dashboards/shortlist.yml").read_text())["providers"]
    dashboards = mounted_file(grafana, provider["options"]["path"])
    home = env_of(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert mounted_file(grafana, home) == dashboards / "shortlist.json"
    dashboard = json.loads((dashboards / "shortlist.json").read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {source["uid"]}, "the dashboard must query the provisioned datasource"
